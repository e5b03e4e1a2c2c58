"""The one error hierarchy of ft.

Every error a user can cause derives from :class:`FtError`; the CLI prints it as one line (a config
error with several problems: one line per problem) and exits with :attr:`FtError.exit_code`. Anything else that escapes is a bug in ft or a plugin.
"""

from __future__ import annotations


class FtError(Exception):
    """Base of every error ft reports to a user (one line, non-zero exit)."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class UsageError(FtError):
    """The command line itself is wrong: unknown option value, missing argument."""

    exit_code = 2


class ConfigError(UsageError):
    """The configuration is invalid. Holds every problem found, not just the first.

    One problem reads as one line; several read as a header line and one ``  - key: problem`` line each.
    """

    def __init__(self, problems: list[str] | str, *, source: str | None = None) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        self.source = source
        where = f"{source}: " if source else ""
        if len(self.problems) == 1:
            message = f"invalid config: {where}{self.problems[0]}"
        else:
            lines = "".join(f"\n  - {problem}" for problem in self.problems)
            message = f"invalid config: {where}{len(self.problems)} problems:{lines}"
        super().__init__(message)


class PluginError(FtError):
    """A plugin is missing, broken, or clashes with another."""


class DataError(FtError):
    """A dataset cannot be read or does not fit its format; names file, line and field."""


class ModelError(FtError):
    """A model or tokenizer cannot be found or loaded."""


class RunDirError(FtError):
    """A run directory is missing, incomplete, or would be overwritten."""


class HubError(FtError):
    """Talking to the Hugging Face Hub failed (auth, repo id, network)."""


class TrainingError(FtError):
    """Training stopped: NaN loss, interruption, an impossible batch layout."""


#: Exceptions of the HTTP libraries under huggingface_hub and datasets that mean the server could not be reached.
_NETWORK_ERRORS = {
    "httpx": ("ConnectError", "ConnectTimeout", "ReadTimeout", "NetworkError", "RemoteProtocolError"),
    "requests": ("ConnectionError", "ConnectTimeout", "ReadTimeout"),
    "urllib3": ("MaxRetryError", "NewConnectionError"),
}


def unreachable_hub(exc: BaseException) -> HubError | None:
    """A one-line :class:`HubError` when ``exc`` (or what caused it) is a failed connection to a Hub endpoint while
    loading a model, tokenizer or dataset; None for anything else."""
    import os

    seen = 0
    while exc is not None and seen < 10:
        root = type(exc).__module__.split(".")[0]
        if any(cls.__name__ in _NETWORK_ERRORS.get(root, ()) for cls in type(exc).__mro__):
            endpoint = os.environ.get("HF_ENDPOINT") or "https://huggingface.co"
            return HubError(f"cannot reach the Hugging Face Hub at {endpoint} ({type(exc).__name__}: "
                            f"{str(exc)[:200] or 'no answer'}); check the network and HF_ENDPOINT, or set "
                            "HF_HUB_OFFLINE=1 to use only the models and datasets already in the cache")
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return None
