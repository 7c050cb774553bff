"""Fenced ``bash`` / ``python`` blocks of README.md and docs/*.md, and how they are marked.

A block runs unless the line just before its fence is ``<!-- skip: REASON -->`` (the reason
says why a reader can run it but the test cannot: a GPU, the hub, a machine set-up). Blocks of
one page run in order in one working directory, python blocks in one namespace, like the cells
of a notebook: a page may build on its own earlier blocks, never on another page's.
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RUNNABLE_LANGUAGES = ("bash", "python")
SKIP_MARK = re.compile(r"^\s*<!--\s*skip:\s*(?P<reason>.*?)\s*-->\s*$")
FENCE = re.compile(r"^(?P<indent>\s*)(?P<ticks>```+)(?P<lang>[\w-]*)\s*$")


@dataclass(frozen=True)
class Block:
    page: str
    line: int  # 1-based line of the opening fence
    lang: str
    code: str
    skip: str | None  # the reason it is not run, or None

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"


def doc_pages() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def extract_blocks(path: Path) -> list[Block]:
    """Every fenced block of ``path`` in a runnable language, with its skip reason if marked."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks, i = [], 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        end = i + 1
        while end < len(lines) and lines[end].strip() != opening["ticks"]:
            end += 1
        if opening["lang"] in RUNNABLE_LANGUAGES:
            previous = next((s for s in reversed(lines[:i]) if s.strip()), "")
            mark = SKIP_MARK.match(previous)
            code = textwrap.dedent("\n".join(lines[i + 1 : end]))
            name = str(path.relative_to(ROOT))
            blocks.append(
                Block(name, i + 1, opening["lang"], code, mark["reason"] if mark else None)
            )
        i = end + 1
    return blocks
