"""The plugin manager: finds plugins through entry points, isolates broken ones, keeps the registry.

Plugins are distributions exposing an entry point in the ``ftcore`` group. Each is loaded on its own,
so one that fails to import (``SystemExit`` included), or whose registration raises, is reported by name
while the others keep working. ``FT_PLUGINS`` (``"a,b"`` allowlist, ``"-a,-b"`` blocklist) and
``--disable NAME`` apply before a plugin is imported.

The registry knows which plugin registered each method, format, shape and metric, and :meth:`Registry.call`
calls a work hook on that plugin only. A name registered by two plugins belongs to neither: both plugins
stay loaded with their other names, and every use of the clashing name fails with one line naming both
(``ft plugins`` shows it too), whatever order the entry points load in.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import pluggy

from ftcore.contract import hookspecs
from ftcore.contract.specs import FormatSpec, ImporterSpec, MethodSpec, MetricSpec, RewardSpec, ShapeSpec
from ftcore.errors import FtError, PluginError
from ftcore.util.suggest import did_you_mean

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "ftcore"
BUILTIN_NAME = "ftcore"

_KINDS = {
    "method": "register_methods",
    "format": "register_dataset_formats",
    "shape": "register_shapes",
    "metric": "register_metrics",
    "reward": "register_rewards",
    "importer": "register_config_importers",
}
_SPEC_TYPES = {"method": MethodSpec, "format": FormatSpec, "shape": ShapeSpec, "metric": MetricSpec,
               "reward": RewardSpec, "importer": ImporterSpec}
#: The distribution to suggest when no plugin provides any name of a kind.
_SUGGESTED = {"method": "ftlora", "format": "ftinstruct", "shape": "ftinstruct", "metric": "ftmetrics",
              "reward": "ftrl", "importer": "ftimport"}


@dataclass
class PluginInfo:
    """One plugin as ``ft plugins`` shows it: where it comes from and what it provides."""

    name: str
    dist: str
    version: str
    module: str = ""
    methods: list[str] = field(default_factory=list)
    formats: list[str] = field(default_factory=list)
    shapes: list[str] = field(default_factory=list)
    metrics: list[str] = field(default_factory=list)
    rewards: list[str] = field(default_factory=list)
    importers: list[str] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)
    hooks: list[str] = field(default_factory=list)
    error: str | None = None
    plugin: Any = field(default=None, repr=False, compare=False)

    @property
    def label(self) -> str:
        return f"plugin '{self.name}' ({self.dist} {self.version})"

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "dist": self.dist,
            "version": self.version,
            "module": self.module,
            "methods": self.methods,
            "formats": self.formats,
            "shapes": self.shapes,
            "metrics": self.metrics,
            "rewards": self.rewards,
            "importers": self.importers,
            "commands": self.commands,
            "hooks": self.hooks,
            "error": self.error,
        }


@dataclass
class Registry:
    """What is installed: every method/format/shape/metric with the plugin that provides it."""

    pm: pluggy.PluginManager
    plugins: list[PluginInfo] = field(default_factory=list)
    failed: list[PluginInfo] = field(default_factory=list)
    methods: dict[str, tuple[MethodSpec, PluginInfo]] = field(default_factory=dict)
    formats: dict[str, tuple[FormatSpec, PluginInfo]] = field(default_factory=dict)
    shapes: dict[str, tuple[ShapeSpec, PluginInfo]] = field(default_factory=dict)
    metrics: dict[str, tuple[MetricSpec, PluginInfo]] = field(default_factory=dict)
    rewards: dict[str, tuple[RewardSpec, PluginInfo]] = field(default_factory=dict)
    importers: dict[str, tuple[ImporterSpec, PluginInfo]] = field(default_factory=dict)
    #: ``(kind, name)`` -> every plugin that registered it, for names registered more than once.
    clashes: dict[tuple[str, str], list[PluginInfo]] = field(default_factory=dict)
    #: ``ft`` subcommands added by plugins (``register_commands``), collected on first use, per reserved set.
    _commands: dict[frozenset[str], dict[str, tuple[Any, PluginInfo]]] = field(default_factory=dict, repr=False)
    #: Why a plugin's ``register_commands`` failed (its commands are missing), one line per plugin.
    command_failures: list[str] = field(default_factory=list)

    @property
    def hook(self) -> Any:
        """Every plugin's hooks (``registry.hook.register_methods()``); work hooks go through :meth:`call`."""
        return self.pm.hook

    def table(self, kind: str) -> dict[str, tuple[Any, PluginInfo]]:
        """``{name: (spec, plugin)}`` of one kind: ``method``, ``format``, ``shape``, ``metric``, ``reward`` or
        ``importer``."""
        tables = {"method": self.methods, "format": self.formats, "shape": self.shapes, "metric": self.metrics,
                  "reward": self.rewards, "importer": self.importers}
        return tables[kind]

    def method(self, name: str) -> MethodSpec:
        """Return the spec of method ``name`` or raise a PluginError listing the installed ones."""
        return self._lookup("method", name)

    def format(self, name: str) -> FormatSpec:
        """Return the spec of dataset format ``name`` or raise a PluginError listing the installed ones."""
        return self._lookup("format", name)

    def shape(self, name: str) -> ShapeSpec:
        """Return the spec of data shape ``name`` or raise a PluginError listing the installed ones."""
        return self._lookup("shape", name)

    def metric(self, name: str) -> MetricSpec:
        """Return the spec of metric ``name`` or raise a PluginError listing the installed ones."""
        return self._lookup("metric", name)

    def reward(self, name: str) -> RewardSpec:
        """Return the spec of reward ``name`` or raise a PluginError listing the installed ones."""
        return self._lookup("reward", name)

    def importer(self, name: str) -> ImporterSpec:
        """Return the spec of config importer ``name`` or raise a PluginError listing the installed ones."""
        return self._lookup("importer", name)

    def owner(self, kind: str, name: str) -> PluginInfo:
        """The plugin that registered ``name``; a PluginError when none did, or two did."""
        self._lookup(kind, name)
        return self.table(kind)[name][1]

    def call(self, hook: str, kind: str, name: str, /, **kwargs: Any) -> Any:
        """Call work hook ``hook`` on the plugin that registered ``name`` of ``kind``, and on no other.

        A plugin's own bug (any exception that is not an :class:`FtError`, or ``sys.exit``) becomes a
        :class:`PluginError` naming the plugin and the hook; an ``FtError`` it raises on purpose passes as is.
        """
        owner = self.owner(kind, name)
        return self._call_on(owner, hook, kwargs)

    def broadcast(self, hook: str, /, **kwargs: Any) -> list[Any]:
        """Call ``hook`` on every plugin that implements it, one at a time, each failure named as in :meth:`call`."""
        return [self._call_on(info, hook, kwargs) for info in self._implementing(hook)]

    def _implementing(self, hook: str) -> list[PluginInfo]:
        """The loaded plugins that implement ``hook``, in load order."""
        implementers = {impl.plugin_name for impl in getattr(self.pm.hook, hook).get_hookimpls()}
        return [info for info in self.plugins if info.name in implementers]

    def commands(self, reserved: set[str] | frozenset[str] = frozenset()) -> dict[str, tuple[Any, PluginInfo]]:
        """``{name: (click command, plugin)}`` of every command plugins add through ``register_commands``.

        Each plugin fills a click group of its own; a plugin that fails there, or a name in ``reserved``
        (ftcore's own commands) or already taken by another plugin, is skipped with a warning naming it.
        """
        key = frozenset(reserved)
        if key not in self._commands:
            found: dict[str, tuple[Any, PluginInfo]] = {}
            for info in self._implementing("register_commands"):
                self._add_commands(info, key, found)
            self._commands[key] = found
        return self._commands[key]

    def _add_commands(self, info: PluginInfo, reserved: frozenset[str], found: dict[str, tuple[Any, PluginInfo]]) -> None:
        import click

        group = click.Group(name=info.name)
        try:
            self._call_on(info, "register_commands", {"cli": group})
        except PluginError as exc:
            log.warning("%s", exc)
            if str(exc) not in self.command_failures:
                self.command_failures.append(str(exc))
            return
        for name, command in group.commands.items():
            taken = "ftcore" if name in reserved else found[name][1].label if name in found else None
            if taken:
                log.warning("%s adds command %r, which %s already has; ignored", info.label, name, taken)
                continue
            command.invoke = _guarded(command.invoke, f"{info.label} failed in command {name!r}")
            found[name] = (command, info)
            if name not in info.commands:
                info.commands.append(name)

    def _call_on(self, info: PluginInfo, hook: str, kwargs: dict[str, Any]) -> Any:
        others = [plugin for plugin in self.pm.get_plugins() if plugin is not info.plugin]
        try:
            return self.pm.subset_hook_caller(hook, remove_plugins=others)(**kwargs)
        except FtError:
            raise
        except (Exception, SystemExit) as exc:
            raise PluginError(f"{info.label} failed in {hook}: {describe_error(exc)}") from exc

    def _lookup(self, kind: str, name: str) -> Any:
        table = self.table(kind)
        if name in table:
            return table[name][0]
        clash = self.clashes.get((kind, name))
        if clash:
            raise PluginError(clash_message(kind, name, clash))
        raise PluginError(unknown_name_message(kind, name, sorted(table), self.failed))


def _guarded(invoke: Any, failed: str) -> Any:
    """``invoke`` of a plugin's command, with its bugs (an exception that is neither an FtError nor click's, or
    ``sys.exit`` with a failing code) raised as a PluginError starting with ``failed``."""
    import click

    def run(ctx: Any) -> Any:
        try:
            return invoke(ctx)
        except (FtError, click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except SystemExit as exc:
            if exc.code in (0, None):
                raise
            raise PluginError(f"{failed}: {describe_error(exc)}") from exc
        except Exception as exc:
            raise PluginError(f"{failed}: {describe_error(exc)}") from exc

    return run


def clash_message(kind: str, name: str, owners: list[PluginInfo]) -> str:
    """One line: which plugins register the same name, and how to keep one of them."""
    shown = " and ".join(info.label for info in owners)
    return (f"{kind} {name!r} is registered by {shown}; uninstall one of them, or disable one with "
            f"FT_PLUGINS=-{owners[-1].name} (or ft --disable {owners[-1].name})")


def unknown_name_message(kind: str, name: str, installed: list[str], failed: list[PluginInfo]) -> str:
    """One line: the unknown name, a did-you-mean, what is installed, and what failed to load."""
    message = f"unknown {kind} {name!r}{did_you_mean(name, installed)}"
    message += f"; installed {kind}s: {', '.join(installed) if installed else 'none'}"
    if not installed:
        message += f" (install one, e.g. `pip install {_SUGGESTED[kind]}`)"
    if failed:
        reasons = ", ".join(f"{p.name} ({p.error})" if p.error else p.name for p in failed)
        message += f"; plugins that failed to load: {reasons} (see `ft plugins`)"
    return message


def _selection(disabled: frozenset[str]) -> tuple[set[str] | None, set[str]]:
    """Parse FT_PLUGINS into (allowlist or None, blocklist), adding ``disabled`` to the blocklist."""
    allow: set[str] = set()
    block = set(disabled)
    for item in os.environ.get("FT_PLUGINS", "").split(","):
        item = item.strip()
        if item.startswith("-"):
            block.add(item[1:])
        elif item:
            allow.add(item)
    return (allow or None), block


def _entry_points() -> list[metadata.EntryPoint]:
    return sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name)


def _dist_of(ep: metadata.EntryPoint) -> tuple[str, str]:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return ("unknown", "?")
    return (dist.metadata["Name"] or "unknown", dist.version or "?")


class _Builder:
    """Builds a Registry step by step; kept small so each step reads on its own."""

    def __init__(self, disabled: frozenset[str]) -> None:
        self.pm = pluggy.PluginManager("ftcore")
        self.pm.add_hookspecs(hookspecs)
        self.registry = Registry(pm=self.pm)
        self.allow, self.block = _selection(disabled)

    def build(self) -> Registry:
        from ftcore import __version__
        from ftcore.contract import builtin

        self._add(builtin, PluginInfo(BUILTIN_NAME, "ftcore", __version__, builtin.__name__))
        for ep in _entry_points():
            if ep.name == BUILTIN_NAME or not self._selected(ep.name):
                continue
            dist, version = _dist_of(ep)
            info = PluginInfo(ep.name, dist, version, ep.value)
            try:
                plugin = ep.load()
            except (Exception, SystemExit) as exc:  # a broken plugin must never brick the CLI
                self._fail(info, f"failed to import: {describe_error(exc)}")
                continue
            self._add(plugin, info)
        return self.registry

    def _selected(self, name: str) -> bool:
        if name in self.block:
            self.pm.set_blocked(name)
            return False
        return self.allow is None or name in self.allow

    def _fail(self, info: PluginInfo, reason: str) -> None:
        info.error = reason
        self.registry.failed.append(info)
        log.warning("%s %s", info.label, reason)

    def _add(self, plugin: Any, info: PluginInfo) -> None:
        problem = _api_problem(plugin)
        if problem:
            self._fail(info, problem)
            return
        try:
            self.pm.register(plugin, name=info.name)
        except Exception as exc:
            self._fail(info, f"failed to register: {type(exc).__name__}: {exc}")
            return
        try:
            provided = {kind: self._collect(plugin, kind) for kind in _KINDS}
        except (Exception, SystemExit) as exc:
            self.pm.unregister(plugin)
            message = str(exc) if isinstance(exc, PluginError) else describe_error(exc)
            self._fail(info, f"failed to register: {message}")
            return
        info.plugin = plugin
        for kind, specs in provided.items():
            for spec in specs:
                self._claim(kind, spec, info)
        info.hooks = sorted(caller.name for caller in (self.pm.get_hookcallers(plugin) or []))
        self.registry.plugins.append(info)

    def _collect(self, plugin: Any, kind: str) -> list[Any]:
        """What ``plugin`` registers of ``kind``, through pluggy (so ``@hookimpl(specname=...)`` counts)."""
        caller = getattr(self.pm.hook, _KINDS[kind])
        specs: list[Any] = []
        for impl in caller.get_hookimpls():
            if impl.plugin is plugin:
                specs += list(impl.function() or [])
        seen: set[str] = set()
        for spec in specs:
            if not isinstance(spec, _SPEC_TYPES[kind]):
                raise PluginError(f"{_KINDS[kind]} returned {spec!r}, expected {_SPEC_TYPES[kind].__name__}")
            if spec.name in seen:
                raise PluginError(f"{kind} {spec.name!r} is registered twice")
            seen.add(spec.name)
        return specs

    def _claim(self, kind: str, spec: Any, info: PluginInfo) -> None:
        """Record that ``info`` provides ``spec``; a second claimant makes the name a clash."""
        getattr(info, kind + "s").append(spec.name)
        table, key = self.registry.table(kind), (kind, spec.name)
        if key in self.registry.clashes:
            self.registry.clashes[key].append(info)
        elif spec.name in table:
            self.registry.clashes[key] = [table.pop(spec.name)[1], info]
        else:
            table[spec.name] = (spec, info)
        if key in self.registry.clashes:
            log.warning("%s", clash_message(kind, spec.name, self.registry.clashes[key]))


def describe_error(exc: BaseException) -> str:
    """What a plugin's failure was, in one phrase: ``SystemExit(3) (the plugin called sys.exit)`` or ``Type: message``."""
    if isinstance(exc, SystemExit):
        return f"SystemExit({exc.code!r}) (the plugin called sys.exit)"
    return f"{type(exc).__name__}: {exc}"


def _api_problem(plugin: Any) -> str | None:
    """Why ``plugin`` cannot load with this ftcore, judged by its ``FTCORE_PLUGIN_API`` (the API version it needs)."""
    from ftcore import PLUGIN_API_VERSION

    required = getattr(plugin, "FTCORE_PLUGIN_API", None)
    if required is None:
        return None
    if not isinstance(required, int) or isinstance(required, bool):
        return f"FTCORE_PLUGIN_API must be an integer, got {required!r}"
    if required > PLUGIN_API_VERSION:
        return (f"needs plugin API {required}, but this ftcore provides {PLUGIN_API_VERSION}: "
                "upgrade ftcore (pip install -U ftcore)")
    return None


_REGISTRY: Registry | None = None
_DISABLED: frozenset[str] = frozenset()


def disable(names: list[str] | tuple[str, ...]) -> None:
    """Block plugins by entry-point name for this process (``ft --disable NAME``); resets the cache."""
    global _DISABLED
    _DISABLED = frozenset(names)
    reset_plugin_manager()


def get_registry() -> Registry:
    """The process-wide registry of installed plugins, built on first use."""
    global _REGISTRY
    if _REGISTRY is None:
        _REGISTRY = _Builder(_DISABLED).build()
    return _REGISTRY


def get_plugin_manager() -> pluggy.PluginManager:
    """The process-wide pluggy manager; work hooks go through :meth:`Registry.call` (on the name's owner only)."""
    return get_registry().pm


def reset_plugin_manager() -> None:
    """Forget the cached manager so the next call rediscovers plugins (tests, ``--disable``)."""
    global _REGISTRY
    _REGISTRY = None


def required_libraries(dists: list[str]) -> list[str]:
    """The libraries distributions ``dists`` require (their ``Requires-Dist`` names without extras), in order:
    what a plugin builds on (its adapter library, its trainer's), for ``ft env`` and a run's manifest."""
    import re

    names: list[str] = []
    for dist in dists:
        try:
            requirements = metadata.requires(dist) or []
        except metadata.PackageNotFoundError:
            continue
        for requirement in requirements:
            match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement)
            if match and "extra ==" not in requirement and match.group(0) not in names:
                names.append(match.group(0))
    return names


def ranked_methods() -> list[str]:
    """Installed methods, those that take part in ``ft recommend`` first in its order (:attr:`MethodSpec.recommend`),
    then the others by name."""
    methods = get_registry().methods
    return sorted(methods, key=lambda name: (methods[name][0].recommend is None, methods[name][0].recommend or 0, name))


def default_method() -> str:
    """The method of a config that names none: the installed one ``ft recommend`` tries first.

    :raises ValueError: no installed method takes part in recommendations (the config must name one).
    """
    specs = [(spec.recommend, name) for name, (spec, _info) in get_registry().methods.items() if spec.recommend is not None]
    if not specs:
        installed = ", ".join(sorted(get_registry().methods)) or "none"
        raise ValueError(f"no default method is installed: name one (installed methods: {installed})")
    return min(specs)[1]


def reward_spec(name: str) -> RewardSpec:
    """The installed reward ``name`` (for a method that validates the rewards its options name).

    :raises PluginError: no plugin, or two, registered it; the message lists the installed rewards.
    """
    return get_registry().reward(name)


def provider(kind: str, name: str) -> str:
    """The name of the plugin that registered ``name`` of ``kind`` (``method``, ``format``, ``shape``, ``metric``,
    ``reward``, ``importer``), for messages that name the plugin at fault.

    :raises PluginError: no plugin, or two, registered it.
    """
    return get_registry().owner(kind, name).name


def reward_scores(name: str, prompts: list[str], completions: list[str], examples: list[dict[str, Any]],
                  options: Any) -> list[float] | None:
    """Reward ``name`` of each completion, from the plugin that registered it (its ``compute_reward``)."""
    return get_registry().call("compute_reward", "reward", name, name=name, prompts=prompts, completions=completions,
                               examples=examples, options=options)


def register_plugin(plugin: Any, name: str, dist: str = "local", version: str = "0") -> PluginInfo:
    """Register an in-process plugin object (tests, notebooks) as if it came from an entry point.

    Returns its :class:`PluginInfo`; ``info.error`` is set if it was rejected.
    """
    registry = get_registry()
    builder = _Builder.__new__(_Builder)
    builder.pm, builder.registry = registry.pm, registry
    info = PluginInfo(name, dist, version, getattr(plugin, "__name__", type(plugin).__name__))
    builder._add(plugin, info)
    return info


def unregister_plugin(name: str) -> None:
    """Remove a plugin registered with :func:`register_plugin` and everything it provided."""
    registry = get_registry()
    plugin = registry.pm.get_plugin(name)
    if plugin is not None:
        registry.pm.unregister(plugin)
    registry.plugins = [p for p in registry.plugins if p.name != name]
    registry.failed = [p for p in registry.failed if p.name != name]
    for kind in _KINDS:
        table = registry.table(kind)
        for key in [k for k, (_, info) in table.items() if info.name == name]:
            del table[key]
    for key, owners in list(registry.clashes.items()):
        remaining = [info for info in owners if info.name != name]
        if len(remaining) == len(owners):
            continue
        del registry.clashes[key]
        if len(remaining) == 1:
            kind, spec_name = key
            spec = next(s for s in _collected(registry, remaining[0], kind) if s.name == spec_name)
            registry.table(kind)[spec_name] = (spec, remaining[0])
        elif remaining:
            registry.clashes[key] = remaining


def _collected(registry: Registry, info: PluginInfo, kind: str) -> list[Any]:
    builder = _Builder.__new__(_Builder)
    builder.pm, builder.registry = registry.pm, registry
    return builder._collect(info.plugin, kind)
