"""Formulas in the docs reach the browser as arithmatex markup with MathJax loaded after it."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import yaml
from mkdocs.commands.build import build
from mkdocs.config import load_config

ROOT = Path(__file__).resolve().parents[2]
MATH_PAGES = ("concepts.md", "export.md")


def _site_config(tmp_path: Path) -> Any:
    """mkdocs.yml as shipped, on just the pages with math and without the API plugin
    (mkdocstrings imports the package, which the full `make docs` build already covers)."""
    raw = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    docs = tmp_path / "docs"
    docs.mkdir()
    for page in MATH_PAGES:
        text = (ROOT / "docs" / page).read_text()
        (docs / page).write_text(re.sub(r"^::: .*$", "", text, flags=re.M))
    shutil.copytree(ROOT / "docs" / "javascripts", docs / "javascripts")
    raw["plugins"] = ["search"]
    raw["nav"] = [{page: page} for page in MATH_PAGES]
    raw["strict"] = False  # links to pages left out of this small build are expected
    config_file = tmp_path / "mkdocs.yml"
    config_file.write_text(yaml.safe_dump(raw))
    return load_config(str(config_file), site_dir=str(tmp_path / "site"))


def test_math_pages_carry_arithmatex_markup_and_mathjax(tmp_path: Path) -> None:
    build(_site_config(tmp_path))
    for page in MATH_PAGES:
        html = (tmp_path / "site" / page.removesuffix(".md") / "index.html").read_text()
        assert '<span class="arithmatex">' in html, page
        assert "javascripts/mathjax.js" in html, page
        assert "mathjax@3" in html, page
        # MathJax must find its settings before it loads.
        assert html.index("javascripts/mathjax.js") < html.index("mathjax@3"), page
    concepts = (tmp_path / "site" / "concepts" / "index.html").read_text()
    assert '<div class="arithmatex">' in concepts  # the splice's displayed formula


def test_no_raw_dollar_math_left_in_the_docs() -> None:
    """``$...$`` math renders too, but the docs use ``\\(...\\)`` so that shell variables in
    prose (``$ORG``) can never be mistaken for a formula; a TeX command between dollars is
    a formula someone wrote the other way."""
    for page in sorted((ROOT / "docs").glob("*.md")):
        prose = re.sub(r"```.*?```|`[^`\n]*`", "", page.read_text(), flags=re.S)
        assert not re.search(r"\$[^$\n]*\\[a-zA-Z]+[^$\n]*\$", prose), page.name
