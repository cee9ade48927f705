"""MkDocs hooks: let the pages link to files of the repository outside ``docs/``.

The pages link to experiment scripts, their committed findings and figures,
and reports under ``data/`` with relative links such as
``../experiments/multicore.py``, which work wherever the repository is read
as files. For the built site, every such file that a page links to is added
to the site at the same path under the site's root, and the page's links are
rewritten to point there (``../experiments/...`` becomes ``experiments/...``),
so that MkDocs checks them like any other link under ``--strict``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files
from mkdocs.structure.pages import Page

# A Markdown link or image target that climbs out of docs/: ](../path) or ](../path#anchor).
OUTSIDE = re.compile(r"\]\(((?:\.\./)+)([^)#\s]+)(#[^)\s]*)?\)")


def _targets(docs: Path) -> set[str]:
    """Repository paths (relative to its root) that the pages under ``docs`` link to."""
    root = docs.parent
    found: set[str] = set()
    for page in docs.rglob("*.md"):
        depth = len(page.relative_to(docs).parts) - 1
        for ups, path, _anchor in OUTSIDE.findall(page.read_text(encoding="utf-8")):
            if ups.count("../") != depth + 1:
                continue  # a link inside docs/, or above the repository
            target = root / path
            if target.is_file():
                found.add(target.relative_to(root).as_posix())
    return found


def on_files(files: Files, config: Any) -> Files:
    docs = Path(config["docs_dir"])
    for path in sorted(_targets(docs)):
        if files.get_file_from_path(path) is None:
            files.append(
                File(
                    path,
                    src_dir=str(docs.parent),
                    dest_dir=config["site_dir"],
                    use_directory_urls=config["use_directory_urls"],
                )
            )
    return files


def on_page_markdown(markdown: str, page: Page, config: Any, files: Files) -> str:
    depth = page.file.src_uri.count("/")
    root = Path(config["docs_dir"]).parent

    def inside(match: re.Match[str]) -> str:
        ups, path, anchor = match.group(1), match.group(2), match.group(3) or ""
        if ups.count("../") != depth + 1 or not (root / path).is_file():
            return match.group(0)
        return f"]({'../' * depth}{path}{anchor})"

    return OUTSIDE.sub(inside, markdown)
