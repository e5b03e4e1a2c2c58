#!/usr/bin/env python3
"""Move ftcore's flat modules into sub-packages by layer and rewrite every reference to them.

Run from anywhere inside the repository, on a clean work tree (it uses ``git mv``)::

    python tools/relayout.py            # move and rewrite
    python tools/relayout.py --check    # exit 1 if anything would change (0 once the layout is done)

What it does, deterministically:

1. ``git mv`` each module of :data:`MOVES` that still sits at its old place into its sub-package (creating the
   package's ``__init__.py`` from :data:`PACKAGES`). A module that is not in the table (a helper added it after
   the table was written), or that no longer exists (a helper removed it), is left alone.
2. Rewrites, in every tracked file under :data:`ROOTS`: ``ftcore.<old>`` dotted names (imports, ``import x as
   y``, monkeypatch and logger strings, entry points, ``_LAZY`` targets, docs and mkdocstrings references),
   ``from ftcore import <moved module>`` statements, and ``[src/]ftcore/<old>.py`` paths.
3. Rewrites the layer mapping of tests/test_layers.py: each moved module's entry becomes its sub-package's.
4. Sorts the imports of the Python files it changed (``ruff check --select I --fix``), when ruff is installed.

Running it twice changes nothing the second time: a name already inside a sub-package is never moved again.
A new dotted name whose package has the old module's name (``ftcore.config.schema``, ``ftcore.models.loading``)
is recognised as new; in prose, name those packages as folders (``config/``, ``models/``).
"""

from __future__ import annotations

import argparse
import ast
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

#: The sub-packages, top layer first: (layer in tests/test_layers.py, docstring of its ``__init__.py``).
PACKAGES = {
    "ftcore.jobs": ("jobs", "What the commands run: train, evaluate, benchmark, merge, generate, recommend, export, "
                    "upload, config import, plugin scaffolding."),
    "ftcore.run": ("run", "One training run's machinery: its state, the trainer and its arguments, progress, outputs "
                   "and manifest, guards, the run lock, preflight and resume checks, passes, distributed launch, "
                   "trackers."),
    "ftcore.models": ("models", "Models: loading (Hub ids, local dirs, GGUF, run dirs), the attention and loss kernels "
                      "of training, generation settings, memory estimates."),
    "ftcore.artifacts": ("artifacts", "What a run leaves on disk and how it is read back: the run directory, the base "
                         "model's provenance, files transformers 4.x reads, the loss curve."),
    "ftcore.config": ("config", "The run configuration: its schema, YAML loading and overrides, where each key "
                      "belongs."),
    "ftcore.contract": ("contract", "The plugin contract: hook specifications, the specs plugins register, the plugin "
                        "manager and registry, record helpers, ftcore's own plugin."),
    "ftcore.util": ("base", "Helpers every layer uses: did-you-mean, cache paths, logging and secret redaction."),
}

#: Old dotted name -> new dotted name. ``ftcore.data``, ``ftcore.commands``, ``ftcore.testing``, ``ftcore.cli``,
#: ``ftcore.errors`` and ``ftcore.__main__`` stay where they are.
MOVES = {
    # jobs: what a command runs
    "ftcore.train": "ftcore.jobs.train",
    "ftcore.evaluation": "ftcore.jobs.evaluation",
    "ftcore.benchmark": "ftcore.jobs.benchmark",
    "ftcore.merge": "ftcore.jobs.merge",
    "ftcore.generate": "ftcore.jobs.generate",
    "ftcore.recommend": "ftcore.jobs.recommend",
    "ftcore.scaffold": "ftcore.jobs.scaffold",
    "ftcore.config_import": "ftcore.jobs.config_import",
    # run: the pieces of one training run
    "ftcore.runstate": "ftcore.run.state",
    "ftcore.trainer": "ftcore.run.trainer",
    "ftcore.trainargs": "ftcore.run.arguments",
    "ftcore.trainprogress": "ftcore.run.progress",
    "ftcore.outputs": "ftcore.run.outputs",
    "ftcore.manifest": "ftcore.run.manifest",
    "ftcore.guard": "ftcore.run.guard",
    "ftcore.runlock": "ftcore.run.runlock",
    "ftcore.preflight": "ftcore.run.preflight",
    "ftcore.resumecheck": "ftcore.run.resumecheck",
    "ftcore.passes": "ftcore.run.passes",
    "ftcore.distributed": "ftcore.run.distributed",
    "ftcore.launch": "ftcore.run.launch",
    "ftcore.torchrun": "ftcore.run.torchrun",
    "ftcore.trackers": "ftcore.run.trackers",
    # models
    "ftcore.models": "ftcore.models.loading",
    "ftcore.attention": "ftcore.models.attention",
    "ftcore.loss": "ftcore.models.loss",
    "ftcore.generation": "ftcore.models.generation",
    "ftcore.estimate": "ftcore.models.estimate",
    # artifacts: what a run leaves on disk
    "ftcore.rundir": "ftcore.artifacts.rundir",
    "ftcore.provenance": "ftcore.artifacts.provenance",
    "ftcore.portable": "ftcore.artifacts.portable",
    "ftcore.curves": "ftcore.artifacts.curves",
    # config
    "ftcore.config": "ftcore.config.schema",
    "ftcore.keys": "ftcore.config.keys",
    # contract
    "ftcore.hookspecs": "ftcore.contract.hookspecs",
    "ftcore.specs": "ftcore.contract.specs",
    "ftcore.plugins": "ftcore.contract.plugins",
    "ftcore.builtin": "ftcore.contract.builtin",
    "ftcore.records": "ftcore.contract.records",
    "ftcore.rewards": "ftcore.contract.rewards",
    # base helpers
    "ftcore.suggest": "ftcore.util.suggest",
    "ftcore.paths": "ftcore.util.paths",
    "ftcore.redact": "ftcore.util.redact",
    "ftcore.logs": "ftcore.util.logs",
}
NEW = set(MOVES.values())
assert not NEW & set(MOVES), "a new name must never be an old one"
assert {new.rpartition(".")[0] for new in NEW} <= set(PACKAGES)

#: What is rewritten: tracked files under these paths.
ROOTS = ("src", "plugins", "tests", "docs", "examples", "benchmarks", "noxfile.py", "README.md", "mkdocs.yml",
         "pyproject.toml", ".ci")
BINARY = {".png", ".jpg", ".jpeg", ".gif", ".ico", ".gguf", ".safetensors", ".bin", ".pt", ".whl", ".gz", ".zip"}
LAYER_TEST = Path("tests/test_layers.py")
BLOCK_START = "# --- layer mapping (tools/relayout.py rewrites this block) ---"
BLOCK_END = "# --- end of layer mapping ---"

DOTTED = re.compile(r"(?<![\w.])ftcore(?:\.[A-Za-z_]\w*)+")
PATH = re.compile(r"(?<![\w./-])((?:src/)?)(ftcore(?:/\w+)+)\.py\b")


def new_dotted(name: str) -> str:
    """``name`` with its moved module replaced by the new one; unchanged when it is already new or never moved."""
    parts = name.split(".")
    prefixes = [".".join(parts[:i]) for i in range(len(parts), 1, -1)]
    old = next((p for p in prefixes if p in MOVES), None)
    new = next((p for p in prefixes if p in NEW), None)
    if old is None or (new is not None and len(new) >= len(old)):
        return name
    return MOVES[old] + name[len(old):]


def new_path(match: re.Match[str]) -> str:
    """A ``[src/]ftcore/<module>.py`` path, moved."""
    dotted = match.group(2).replace("/", ".")
    moved = MOVES.get(dotted, dotted)
    return f"{match.group(1)}{moved.replace('.', '/')}.py"


def rewrite_python(text: str, outside: Callable[[str], str]) -> str:
    """A Python file: each ``from ftcore... import`` statement rewritten from its parts (:func:`_from_import`),
    the text between them by ``outside``. The statements are kept from ``outside``: in ``from ftcore.models import
    loss`` the package's name is also the old module's."""
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return outside(text)
    data = text.encode("utf-8")
    starts = [0]
    for line in text.splitlines(keepends=True):
        starts.append(starts[-1] + len(line.encode("utf-8")))
    spans = sorted(
        (starts[node.lineno - 1] + node.col_offset, starts[node.end_lineno - 1] + node.end_col_offset, node)
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("ftcore")
    )
    out, done = [], 0
    for start, end, node in spans:
        out.append(outside(data[done:start].decode("utf-8")))
        out.append(f"\n{' ' * node.col_offset}".join(_from_import(node)) or data[start:end].decode("utf-8"))
        done = end
    out.append(outside(data[done:].decode("utf-8")))
    return "".join(out)


def _from_import(node: ast.ImportFrom) -> list[str]:
    """The statements that replace ``from <module> import <names>``; none when it already names new modules."""
    module = node.module or ""
    if any(f"{module}.{alias.name}" in NEW for alias in node.names):
        return []
    kept, by_package, renamed = [], {}, []
    for alias in node.names:
        shown = f"{alias.name} as {alias.asname}" if alias.asname else alias.name
        old = f"{module}.{alias.name}"
        if old not in MOVES:
            kept.append(shown)
            continue
        package, _, leaf = MOVES[old].rpartition(".")
        if leaf == alias.name:
            by_package.setdefault(package, []).append(shown)
        else:  # renamed on the way (config -> config.schema): the old name stays the local one
            renamed.append(f"import {MOVES[old]} as {alias.asname or alias.name}")
    if not by_package and not renamed and new_dotted(module) == module:
        return []
    statements = [f"from {new_dotted(module)} import {', '.join(kept)}"] if kept else []
    statements += [f"from {package} import {', '.join(names)}" for package, names in sorted(by_package.items())]
    return statements + renamed


def rewrite_text(text: str, python: bool) -> str:
    """Every reference in ``text`` to a moved module, moved; the layer mapping block is left to its own step."""

    def outside(part: str) -> str:
        part = DOTTED.sub(lambda m: new_dotted(m.group(0)), part)
        return PATH.sub(new_path, part)

    def rewrite(part: str) -> str:
        return rewrite_python(part, outside) if python else outside(part)

    head, sep, rest = text.partition(BLOCK_START)
    if not sep:
        return rewrite(text)
    block, end, tail = rest.partition(BLOCK_END)
    return rewrite(head) + sep + block + end + rewrite(tail)


def rewrite_layer_mapping(text: str) -> str:
    """tests/test_layers.py's MODULE_LAYERS: each moved module's entry becomes its sub-package's; the rest stay."""
    head, sep, rest = text.partition(BLOCK_START)
    block, end, tail = rest.partition(BLOCK_END)
    if not (sep and end):
        raise SystemExit(f"{LAYER_TEST}: no layer mapping block ({BLOCK_START!r} ... {BLOCK_END!r})")
    tree = ast.parse(block)
    assign = next(n for n in tree.body if isinstance(n, ast.Assign) and n.targets[0].id == "MODULE_LAYERS")
    old: dict[str, str] = ast.literal_eval(assign.value)
    layers = ast.literal_eval(next(n for n in ast.parse(head).body if isinstance(n, ast.Assign)
                                   and n.targets[0].id == "LAYERS").value)
    mapping: dict[str, str] = {}
    for name, layer in old.items():
        if name in MOVES:
            name = MOVES[name].rpartition(".")[0]
            layer = PACKAGES[name][0]
        mapping.setdefault(name, layer)
    for package, (layer, _) in PACKAGES.items():
        mapping.setdefault(package, layer)
    order = sorted(mapping.items(), key=lambda item: (layers.index(item[1]), item[0] != "ftcore", item[0]))
    comment = "".join(line + "\n" for line in block.splitlines() if line.startswith("#:"))
    entries = "".join(f'    "{name}": "{layer}",\n' for name, layer in order)
    return f"{head}{sep}\n{comment}MODULE_LAYERS = {{\n{entries}}}\n{end}{tail}"


def tracked_files(root: Path) -> list[Path]:
    listed = subprocess.run(["git", "ls-files", "-z", "--", *ROOTS], cwd=root, check=True, capture_output=True,
                            text=True).stdout.split("\0")
    return [root / name for name in sorted(listed) if name and Path(name).suffix not in BINARY]


def package_dir(root: Path, dotted: str) -> Path:
    return root / "src" / Path(*dotted.split("."))


def planned_moves(root: Path) -> list[tuple[Path, Path]]:
    """(old file, new file) of each module that still sits at its old place."""
    moves = []
    for old, new in MOVES.items():
        source = package_dir(root, old).with_suffix(".py")
        target = package_dir(root, new).with_suffix(".py")
        if not source.is_file():
            continue  # moved already, or removed by another change
        if target.exists():
            raise SystemExit(f"both {source.relative_to(root)} and {target.relative_to(root)} exist")
        moves.append((source, target))
    return moves


def move(root: Path, moves: list[tuple[Path, Path]]) -> None:
    for source, target in moves:
        package = target.parent
        init = package / "__init__.py"
        if not init.exists():
            package.mkdir(parents=True, exist_ok=True)
            init.write_text(f'"""{PACKAGES[".".join(package.relative_to(root / "src").parts)][1]}"""\n',
                            encoding="utf-8")
            subprocess.run(["git", "add", str(init.relative_to(root))], cwd=root, check=True)
        subprocess.run(["git", "mv", str(source.relative_to(root)), str(target.relative_to(root))], cwd=root,
                       check=True)


def rewritten(root: Path) -> dict[Path, str]:
    """The new text of every file whose text changes."""
    changed = {}
    for path in tracked_files(root):
        if not path.is_file():
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        new = rewrite_text(text, path.suffix == ".py")
        if path == root / LAYER_TEST:
            new = rewrite_layer_mapping(new)
        if new != text:
            changed[path] = new
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if anything would change")
    args = parser.parse_args(argv)
    root = Path(subprocess.run(["git", "rev-parse", "--show-toplevel"], check=True, capture_output=True,
                               text=True, cwd=Path(__file__).parent).stdout.strip())
    moves = planned_moves(root)
    if args.check:
        pending = [str(s.relative_to(root)) for s, _ in moves]
        if not moves:
            pending += [str(p.relative_to(root)) for p in rewritten(root)]
        print("\n".join(pending) or "nothing to do")
        return 1 if pending else 0
    move(root, moves)
    changed = rewritten(root)
    for path, text in changed.items():
        path.write_text(text, encoding="utf-8")
    python = [str(p.relative_to(root)) for p in changed if p.suffix == ".py"]
    if python and shutil.which("ruff"):
        subprocess.run(["ruff", "check", "--quiet", "--select", "I", "--fix", *python], cwd=root, check=False)
    print(f"moved {len(moves)} modules, rewrote {len(changed)} files")
    return 0


if __name__ == "__main__":
    sys.exit(main())
