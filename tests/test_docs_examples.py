"""The documentation cannot rot: its commands run and its configs validate (markers: docs/contributing.md).

A marker is an HTML comment on the line before a fenced block::

    <!-- test: run -->            run the block's `ft` commands; each must exit 0 (``run exit=N``: exit N)
    <!-- test: config PATH -->    write the block to PATH and validate it as a run config
    <!-- test: file PATH -->      write the block to PATH (data for the page's later blocks)
    <!-- test: covered-by T -->   exercised by test T (``tests/x.py::name``); its ft command lines must parse
    <!-- test: skip REASON -->    not an ft command (pip, nox, torchrun on GPUs): shown, not run

and, on a line of its own, ``<!-- test: tiny-model DIR -->`` puts the tiny test model in DIR before the page's
blocks run, and ``<!-- test: tiny-run DIR -->`` a LoRA run directory that ``ft train`` wrote for that model. Every ``bash``/``console``/``sh``/``shell``/``yaml``/``yml`` block must carry a marker. A block whose
only line is ``--8<-- "path"`` (a snippet include) stands for that file of the repository.
"""

from __future__ import annotations

import ast
import os
import re
import shlex
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import click
import pytest

from ftcore.testing.process import run_ft

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
CHECKED_LANGUAGES = {"bash", "console", "sh", "shell", "yaml", "yml"}
ACTIONS = {"run", "config", "file", "covered-by", "skip"}

_MARKER = re.compile(r"^\s*<!--\s*test:\s*(?P<action>[\w-]+)\s*(?P<arg>.*?)\s*-->\s*$")
_FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>`{3,}|~{3,})\s*(?P<lang>[\w+-]*)(?P<attrs>.*)$")
_SNIPPET = re.compile(r"^--8<--\s+\"(?P<path>[^\"]+)\"$")
_ENV = re.compile(r"^[A-Z_][A-Z0-9_]*=\S*$")
_EXIT = re.compile(r"^exit=(\d+)$")
_SUBST = re.compile(r"\$\([^)]*\)")


# ----------------------------------------------------------------------------- reading pages


@dataclass
class Block:
    """One fenced code block of a page, with the test marker before it (if any)."""

    page: Path
    line: int
    language: str
    text: str
    action: str | None = None
    arg: str = ""
    snippet: Path | None = None

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"

    def content(self) -> str:
        """The block's text, or the repository file a snippet block includes."""
        return self.snippet.read_text(encoding="utf-8") if self.snippet else self.text


@dataclass
class Page:
    """A documentation page: its code blocks in order, and the tiny-model directories it asks for."""

    path: Path
    blocks: list[Block] = field(default_factory=list)
    tiny_models: list[str] = field(default_factory=list)
    tiny_runs: list[str] = field(default_factory=list)


def parse_page(path: Path) -> Page:
    """Read ``path`` into a :class:`Page`: every fenced block, with the marker right before it."""
    page = Page(path)
    lines = path.read_text(encoding="utf-8").splitlines()
    pending: tuple[str, str] | None = None
    number = 0
    while number < len(lines):
        line = lines[number]
        marker, fence = _MARKER.match(line), _FENCE.match(line)
        if marker and marker.group("action") == "tiny-model":
            page.tiny_models.append(marker.group("arg"))
        elif marker and marker.group("action") == "tiny-run":
            page.tiny_runs.append(marker.group("arg"))
        elif marker:
            pending = (marker.group("action"), marker.group("arg"))
        elif fence:
            end = closing_fence(lines, number, fence.group("fence"))
            indent = len(fence.group("indent"))
            block = Block(path, number + 1, fence.group("lang").lower(),
                          "\n".join(text[indent:] for text in lines[number + 1:end]) + "\n")
            block.action, block.arg = pending or (None, "")
            snippet = _SNIPPET.match(block.text.strip())
            if snippet:
                block.snippet = ROOT / snippet.group("path")
            page.blocks.append(block)
            pending, number = None, end
        elif line.strip():
            pending = None
        number += 1
    return page


def closing_fence(lines: list[str], start: int, fence: str) -> int:
    """Line index of the fence that closes the one opened at ``start``."""
    for number in range(start + 1, len(lines)):
        stripped = lines[number].strip()
        if stripped.startswith(fence) and not stripped.strip(fence[0]):
            return number
    raise AssertionError(f"unclosed code fence at line {start + 1}")


@dataclass
class Command:
    """One command of a block: environment prefix, argv, and the output lines the docs promise."""

    env: dict[str, str]
    argv: list[str]
    expected: list[str] = field(default_factory=list)


def commands(block: Block) -> list[Command]:
    """Commands of a block: ``$`` lines of a console block (the lines after one are its output), or every
    non-comment line of a bash block."""
    found: list[Command] = []
    console = block.language == "console"
    for raw in block.content().splitlines():
        line = raw.strip()
        if console and not line.startswith("$ "):
            if found and line and line != "...":
                found[-1].expected.append(line)
            continue
        # A command substitution stands for one word whose value the docs cannot know.
        words = shlex.split(_SUBST.sub("SUBSTITUTED", line.removeprefix("$ ")), comments=True)
        env = {}
        while words and _ENV.match(words[0]):
            key, value = words.pop(0).split("=", 1)
            env[key] = value
        if words:
            found.append(Command(env, words))
    return found


def all_pages() -> list[Page]:
    return [parse_page(path) for path in sorted(DOCS.rglob("*.md"))]


PAGES = all_pages()


def page_id(page: Page) -> str:
    return str(page.path.relative_to(DOCS))


# ----------------------------------------------------------------------------- checks


def test_the_docs_have_marked_blocks():
    """Guards the parser itself: if it stopped finding markers, every other test here would pass vacuously."""
    actions = {block.action for page in PAGES for block in page.blocks}
    assert {"run", "config", "skip"} <= actions


def test_every_command_and_config_block_is_marked():
    problems = []
    for page in PAGES:
        for block in page.blocks:
            if block.language in CHECKED_LANGUAGES and block.action is None:
                problems.append(f"{block.where}: {block.language} block without a <!-- test: ... --> marker")
            if block.action is not None and block.action not in ACTIONS:
                problems.append(f"{block.where}: unknown marker action {block.action!r}")
            if block.snippet is not None and not block.snippet.is_file():
                problems.append(f"{block.where}: snippet {block.snippet} does not exist")
            if block.action == "skip" and not block.arg:
                problems.append(f"{block.where}: skip needs a reason")
            if block.action == "skip" and any(c.argv[0] == "ft" for c in commands(block)):
                problems.append(f"{block.where}: an ft command cannot be skipped; run it or point to its test")
    assert not problems, "\n".join(problems)


def normalised(text: str) -> str:
    return " ".join(text.split())


def promised(line: str, output: str) -> bool:
    """True if ``output`` contains ``line``, where ``...`` inside the line stands for any text."""
    pattern = ".*?".join(re.escape(normalised(part)) for part in line.split("..."))
    return re.search(pattern, output) is not None


def run_block(block: Block, sandbox: Path) -> None:
    """Run every command of a ``run`` block in ``sandbox``; check exit status and promised output."""
    expected_exit = int(_EXIT.match(block.arg).group(1)) if _EXIT.match(block.arg) else 0
    found = commands(block)
    assert found, f"{block.where}: run block without commands"
    for command in found:
        assert command.argv[0] == "ft", f"{block.where}: only ft commands can be run, got {command.argv[0]!r}"
        # A cache of its own, so a page's output never depends on what earlier runs tokenized; one thread,
        # since the tiny model gains nothing from more and threads spin against each other on busy machines.
        env = {"FT_CACHE_DIR": str(sandbox / ".ft-cache"), "OMP_NUM_THREADS": "1", **command.env}
        result = run_ft(*command.argv[1:], env=env, cwd=sandbox, timeout=300)
        shown = f"{block.where}: $ {shlex.join(command.argv)}\n{result.stdout}{result.stderr}"
        assert result.returncode == expected_exit, shown
        output = normalised(result.stdout + result.stderr)
        for line in command.expected:
            assert promised(line, output), f"promised output line missing: {line!r}\n{shown}"


def validate_config(block: Block, path: Path, sandbox: Path) -> None:
    """A config block must load, pass the method's options check, and pass ``ft config validate``."""
    from ftcore.cli import main
    from ftcore.config.schema import load_config, validate_run_config

    validate_run_config(load_config(path))
    # `ft config validate` through the console script's entry point, in this process: a subprocess per block
    # spent seconds importing torch and transformers for a check that needs neither.
    previous = Path.cwd()
    os.chdir(sandbox)
    try:
        main(["config", "validate", str(path.relative_to(sandbox))])
    except SystemExit as stop:
        assert stop.code in (0, None), f"{block.where}: ft config validate exited {stop.code} (error in stderr above)"
    finally:
        os.chdir(previous)


def write_block(block: Block, sandbox: Path) -> Path:
    assert block.arg, f"{block.where}: {block.action} needs a path"
    path = sandbox / block.arg
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(block.content(), encoding="utf-8")
    return path


RUNNABLE = [page for page in PAGES if any(b.action in {"run", "config"} for b in page.blocks)]

#: The word-reversal task of the example configs, in alpaca format: what the tiny run trains on.
REVERSAL = [("one two three", "three two one"), ("red green blue", "blue green red"), ("sun moon", "moon sun"),
            ("a b c d", "d c b a"), ("cat dog bird", "bird dog cat"), ("up down", "down up")]


@pytest.fixture(scope="session")
def tiny_run_dir(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    """A real LoRA run of the tiny model, written once per session by ``ft train`` (a few seconds)."""
    import json

    work = tmp_path_factory.mktemp("docs-run")
    with (work / "train.jsonl").open("w", encoding="utf-8") as handle:
        for _ in range(4):
            for words, reversed_words in REVERSAL:
                record = {"instruction": "Reverse the order of the words.", "input": words, "output": reversed_words}
                handle.write(json.dumps(record) + "\n")
    config = work / "lora.yaml"
    config.write_text(
        f"model: {tiny_model_dir}\nmethod: lora\noutput_dir: {work / 'lora'}\n"
        "data: {train: train.jsonl, max_seq_len: 64}\n"
        "training: {max_steps: 4, save_steps: 2, logging_steps: 1, learning_rate: 1.0e-2}\n",
        encoding="utf-8",
    )
    result = run_ft("train", "--config", str(config), cwd=work,
                    env={"FT_CACHE_DIR": str(work / ".ft-cache"), "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    return work / "lora"


@pytest.mark.model  # the pages' commands train and evaluate tiny models
@pytest.mark.parametrize("page", RUNNABLE, ids=page_id)
def test_page_commands_run_and_configs_validate(page: Page, tmp_path: Path, request: pytest.FixtureRequest):
    sandbox = tmp_path / "work"
    sandbox.mkdir()
    for directory in page.tiny_models:
        shutil.copytree(request.getfixturevalue("tiny_model_dir"), sandbox / directory)
    for directory in page.tiny_runs:
        shutil.copytree(request.getfixturevalue("tiny_run_dir"), sandbox / directory)
    for block in page.blocks:
        if block.action == "file":
            write_block(block, sandbox)
        elif block.action == "config":
            validate_config(block, write_block(block, sandbox), sandbox)
        elif block.action == "run":
            run_block(block, sandbox)


# ----------------------------------------------------------------------------- covered elsewhere


def defined_functions(path: Path) -> set[str]:
    """Names of the test functions (module level or in classes) defined in ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)}


def check_covering_test(reference: str) -> str | None:
    """None if ``tests/x.py::name`` names an existing test, else the problem."""
    path_text, _, name = reference.partition("::")
    path = ROOT / path_text
    if not path.is_file():
        return f"{reference}: no such test file"
    if name and name.split("[")[0] not in defined_functions(path):
        return f"{reference}: no such test function"
    return None


def check_cli_line(argv: list[str]) -> str | None:
    """None if the ft command line names existing (sub)commands and options, else click's complaint."""
    from ftcore.cli import cli

    command, name, args, parent = cli, "ft", argv[1:], None
    try:
        while True:
            # The command's own context settings (``-h`` for help): click caches a command's help option the
            # first time a context asks for it, so a bare Context here would change later ``--help`` output.
            ctx = click.Context(command, info_name=name, parent=parent, **(command.context_settings or {}))
            _, rest, _ = command.make_parser(ctx).parse_args(args)
            if not isinstance(command, click.Group):
                return f"unexpected extra arguments {rest}" if rest and not command.allow_extra_args else None
            if not rest:
                return None
            name, args, parent = rest[0], rest[1:], ctx
            command = command.get_command(ctx, name)
            if command is None:
                return f"no such command {name!r}"
    except click.UsageError as exc:
        return exc.format_message()


def test_covered_blocks_name_real_tests_and_valid_command_lines():
    problems, covered = [], 0
    for page in PAGES:
        for block in page.blocks:
            if block.action != "covered-by":
                continue
            covered += 1
            references = [ref.strip() for ref in block.arg.split(",") if ref.strip()]
            if not references:
                problems.append(f"{block.where}: covered-by needs a test")
            problems += [f"{block.where}: {p}" for ref in references if (p := check_covering_test(ref))]
            for command in commands(block):
                ft_argv = command.argv[command.argv.index("ftcore.cli"):] if "ftcore.cli" in command.argv else command.argv
                if ft_argv[0] in ("ft", "ftcore.cli"):
                    problem = check_cli_line(["ft", *ft_argv[1:]])
                    if problem:
                        problems.append(f"{block.where}: {shlex.join(command.argv)}: {problem}")
    assert not problems, "\n".join(problems)


def test_cli_line_check_rejects_unknown_options_and_commands():
    """The checker behind covered-by blocks must be able to fail."""
    assert check_cli_line(["ft", "config", "validate", "x.yaml", "--set", "a=1"]) is None
    assert "--sett" in check_cli_line(["ft", "config", "validate", "x.yaml", "--sett", "a=1"])
    assert "no such command" in check_cli_line(["ft", "trian"])
