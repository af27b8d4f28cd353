"""Every code block of the documentation is a test: docs/**/*.md, README.md and each package README.

A page's ```python blocks run in order in one namespace (a page builds its example up), in a temporary
working directory that holds HEADWAY_TRACES; top-level `await` is allowed. An HTML comment on the line
right before a fence (invisible on the site) changes what happens to that block:

    <!-- no-test -->       a fragment that cannot run on its own: skipped (keep these rare)
    <!-- file: NAME -->    written to NAME in the working directory, where the later blocks of the page
                           find it: a policy file to `Policy.load`, a module of checks to import
                           (a python block marked so is written and compiled, not run)

Any other comment right before a fence is an error (a misspelt marker would silently change a test).

Other blocks are checked for what they are: ```toml, ```yaml, ```json and ```jsonl must parse; a TOML
or YAML block with any top-level policy key (`tools`, `milestones`, `max_repeats`, `budgets`, ...: the
keys of a policy file) is a policy and must load with `Policy.load`; a `pip install` in a ```sh block
must name a headway distribution and extras that exist.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import json
import re
import shlex
import sys
import tomllib
import traceback
import types
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import pytest
import yaml

from headway import Policy
from headway._policy_file import PolicySpec

ROOT = Path(__file__).resolve().parents[2]
DISTRIBUTIONS = {
    "headway": ROOT / "packages/core/pyproject.toml",
    "headway-langgraph": ROOT / "packages/langgraph_adapter/pyproject.toml",
    "headway-openai-agents": ROOT / "packages/openai_adapter/pyproject.toml",
}
POLICY_KEYS = frozenset(PolicySpec.model_fields)

_FENCE = re.compile(r"^(?P<indent> *)(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`]*)$")
_MARKER = re.compile(r"^\s*<!--\s*(?P<body>.*?)\s*-->\s*$")
_LANGS = {"python": "python", "py": "python", "toml": "toml", "yaml": "yaml", "yml": "yaml", "json": "json"}
_LANGS |= {"jsonl": "jsonl", "ndjson": "jsonl"}
_LANGS |= dict.fromkeys(("sh", "bash", "shell", "console"), "sh")


@dataclass(frozen=True)
class Block:
    page: Path
    line: int  # the opening fence's line, 1-based
    lang: str  # python, toml, yaml, json, sh, or the info string's first word
    source: str
    skip: bool = False
    file: str | None = None

    @property
    def where(self) -> str:
        page = self.page.relative_to(ROOT) if self.page.is_relative_to(ROOT) else self.page
        return f"{page}:{self.line}"


def pages() -> list[Path]:
    docs = sorted((ROOT / "docs").rglob("*.md"))
    readmes = [ROOT / "README.md", *sorted((ROOT / "packages").glob("*/README.md"))]
    return [*docs, *readmes]


def blocks(page: Path) -> list[Block]:
    """The fenced code blocks of a page, with the marker (if any) on the line before each."""
    lines = page.read_text(encoding="utf-8").splitlines()
    out: list[Block] = []
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if m is None:
            i += 1
            continue
        indent, fence = len(m["indent"]), m["fence"]
        words = m["info"].strip().split()
        lang = words[0].lstrip("{.").rstrip("}").casefold() if words else ""
        body: list[str] = []
        j = i + 1
        closing = re.compile(rf"^ *{re.escape(fence[0])}{{{len(fence)},}}\s*$")
        while j < len(lines) and not closing.match(lines[j]):
            body.append(lines[j][indent:] if lines[j][:indent].strip() == "" else lines[j])
            j += 1
        if j == len(lines):
            raise AssertionError(f"{page.relative_to(ROOT)}:{i + 1}: code block is never closed")
        skip, file = False, None
        k = i - 1
        while k >= 0 and not lines[k].strip():
            k -= 1
        marker = _MARKER.match(lines[k]) if k >= 0 else None
        if marker is not None:
            body_text = marker["body"]
            if body_text == "no-test":
                skip = True
            elif body_text.startswith("file:") and body_text.removeprefix("file:").strip():
                file = body_text.removeprefix("file:").strip()
            else:
                raise AssertionError(
                    f"{page}:{k + 1}: unknown marker <!-- {body_text} --> before a code block; "
                    "use <!-- no-test --> or <!-- file: NAME -->"
                )
        out.append(Block(page, i + 1, _LANGS.get(lang, lang), "\n".join(body) + "\n", skip, file))
        i = j + 1
    return out


def _tested(page: Path) -> bool:
    return any(
        not b.skip and b.lang in ("python", "toml", "yaml", "json", "jsonl", "sh") for b in blocks(page)
    )


def _fail(block: Block, what: str) -> NoReturn:
    pytest.fail(f"{block.where}: the ```{block.lang} block {what}", pytrace=False)


# ---- non-python blocks -----------------------------------------------------------------------------


def _parse(block: Block) -> Any:
    try:
        if block.lang == "toml":
            return tomllib.loads(block.source)
        if block.lang == "yaml":
            return yaml.safe_load(block.source)
        if block.lang == "jsonl":
            return [json.loads(line) for line in block.source.splitlines() if line.strip()]
        return json.loads(block.source)
    except (tomllib.TOMLDecodeError, yaml.YAMLError, ValueError) as e:
        problem = str(e)
    _fail(block, f"does not parse: {problem}")


def _check_policy(block: Block, data: Any, cwd: Path) -> None:
    if not (isinstance(data, dict) and POLICY_KEYS & data.keys()):
        return
    suffix = ".toml" if block.lang == "toml" else ".yaml"
    path = cwd / (block.file or f"block-{block.line}{suffix}")
    if block.file is None:
        path.write_text(block.source, encoding="utf-8")
    try:
        Policy.load(path)
        return
    except Exception as e:
        problem = str(e)
    keys = sorted(POLICY_KEYS & data.keys())
    _fail(block, f"looks like a policy (it has {keys}) but does not load:\n{problem}")


def _extras(distribution: str) -> set[str]:
    project = tomllib.loads(DISTRIBUTIONS[distribution].read_text(encoding="utf-8"))["project"]
    return set(project.get("optional-dependencies", {}))


def _check_pip(block: Block) -> None:
    for line in block.source.splitlines():
        command = line.split("#", 1)[0]
        if "pip install" not in command:
            continue
        for word in shlex.split(command.split("pip install", 1)[1]):
            name, _, extras = word.partition("[")
            if word.startswith("-") or not name.startswith("headway"):
                continue
            if name not in DISTRIBUTIONS:
                _fail(block, f"installs {name!r}, which is not one of {sorted(DISTRIBUTIONS)}")
            unknown = {e.strip() for e in extras.rstrip("]").split(",") if e.strip()} - _extras(name)
            if unknown:
                _fail(block, f"installs {word!r}: {name} has no extra {sorted(unknown)}")


# ---- python blocks ---------------------------------------------------------------------------------


def _compile(block: Block) -> types.CodeType:
    # Padded so that line numbers in a traceback are the page's own, and shown from the page.
    padded = "\n" * block.line + block.source
    try:
        code: types.CodeType = compile(
            padded, str(block.page), "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT, dont_inherit=True
        )
        return code
    except SyntaxError as e:
        problem = str(e)
    _fail(block, f"is not valid Python: {problem}")


def _run(block: Block, namespace: dict[str, Any], runner: asyncio.Runner) -> None:
    code = _compile(block)
    failure = None
    try:
        if code.co_flags & inspect.CO_COROUTINE:
            runner.run(eval(code, namespace))
        else:
            exec(code, namespace)
    except Exception as e:
        # The page's frames and below; not this function's (and outside the except: no chained context).
        tb = e.__traceback__.tb_next if e.__traceback__ is not None else None
        failure = "".join(traceback.format_exception(type(e), e, tb))
    if failure is not None:
        _fail(block, f"failed:\n{failure}")


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HEADWAY_TRACES", str(tmp_path / ".headway" / "traces.db"))
    monkeypatch.syspath_prepend(str(tmp_path))
    before = set(sys.modules)
    yield tmp_path
    for name in set(sys.modules) - before:
        origin = getattr(sys.modules[name], "__file__", None) or ""
        if origin.startswith(str(tmp_path)) or name.startswith("docs_page_"):
            del sys.modules[name]


@pytest.mark.parametrize("page", [p for p in pages() if _tested(p)], ids=lambda p: str(p.relative_to(ROOT)))
def test_page(page: Path, workdir: Path) -> None:
    # A real module per page: dataclasses, pydantic and typing resolve names through sys.modules.
    module = types.ModuleType("docs_page_" + re.sub(r"\W", "_", str(page.relative_to(ROOT))))
    sys.modules[module.__name__] = module
    namespace = module.__dict__
    with asyncio.Runner() as runner:
        for block in blocks(page):
            if block.skip:
                continue
            if block.file is not None:
                target = workdir / block.file
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(block.source, encoding="utf-8")
            if block.lang == "python":
                if block.file is not None:
                    _compile(block)
                else:
                    _run(block, namespace, runner)
            elif block.lang in ("toml", "yaml", "json", "jsonl"):
                data = _parse(block)
                if block.lang in ("toml", "yaml"):
                    _check_policy(block, data, workdir)
            elif block.lang == "sh":
                _check_pip(block)


def test_the_pages_are_found() -> None:
    """Guards the collector itself: the pages that must run have python blocks, and few are skipped."""
    found = {str(p.relative_to(ROOT)): blocks(p) for p in pages()}
    for page in (
        "README.md",
        "docs/index.md",
        "docs/quickstart-langgraph.md",
        "docs/quickstart-openai-agents.md",
        "docs/concepts.md",
        "docs/checks.md",
        "docs/policy-files.md",
        "packages/core/README.md",
        "packages/langgraph_adapter/README.md",
        "packages/openai_adapter/README.md",
    ):
        assert any(b.lang == "python" and not b.skip for b in found[page]), f"{page} has no python to run"
    every = [b for bs in found.values() for b in bs]
    skipped = [b.where for b in every if b.skip]
    assert len(skipped) <= max(3, len(every) // 20), f"too many <!-- no-test --> blocks: {skipped}"


def test_markers_are_known(tmp_path: Path) -> None:
    """A misspelt marker would silently run (or skip) a block; the collector must recognise each."""
    page = tmp_path / "page.md"
    page.write_text(
        "<!-- no-test -->\n```python\nx = 1\n```\n\n<!-- file: p.toml -->\n\n```toml\nmax_repeats = 2\n```\n"
        "    ```py\n    y = 2\n    ```\n",
        encoding="utf-8",
    )
    got = blocks(page)
    assert [(b.lang, b.skip, b.file, b.line) for b in got] == [
        ("python", True, None, 2),
        ("toml", False, "p.toml", 8),
        ("python", False, None, 11),
    ]
    assert got[2].source == "y = 2\n"
    page.write_text("<!-- notest -->\n```python\nx = 1\n```\n", encoding="utf-8")
    with pytest.raises(AssertionError, match="unknown marker"):
        blocks(page)
