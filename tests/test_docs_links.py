"""The project's documents link nothing outside the repository: a clone is all a reader has.

* A relative link (`[text](path)`, or a path written as `../…`) must stay inside the
  repository and name a file or folder that exists.
* An `http(s)://` URL may only name the reader's own machine (`localhost`, `127.0.0.1`,
  `[::1]`: the stack `make dev` runs) or a name reserved for examples (`example.com`/`.net`/
  `.org` and names under `.example`, `.test`, `.invalid`, `.localhost`; RFC 2606 and 6761),
  which can never be a real site. Anything else is a page that may change or vanish and
  that an offline reader cannot open, so what the reader needs is written here instead
  (the API contract is docs/api.md, served too as OpenAPI at /docs).
* Nothing names the design document the project was started from (`shared/DESIGN.md`),
  which a clone does not have: not the documents, not the code's comments.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[1]
SKIP_DIRS = {"node_modules", "build", "dist"}

LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1"}
EXAMPLE_DOMAINS = ("example.com", "example.net", "example.org")
RESERVED_SUFFIXES = (".example", ".test", ".invalid", ".localhost")

URL = re.compile(r"https?://[^\s)<>\"'`\]]+")
MARKDOWN_LINK = re.compile(r"\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
PARENT_PATH = re.compile(r"(?<![\w./-])((?:\.\./)+[\w./-]*)")


def _files(*patterns: str) -> list[Path]:
    found = []
    for pattern in patterns:
        for path in ROOT.rglob(pattern):
            parts = path.relative_to(ROOT).parts
            if any(p.startswith(".") or p in SKIP_DIRS for p in parts[:-1]):
                continue
            found.append(path)
    return sorted(found)


DOCUMENTS = _files("*.md")


def _allowed(url: str) -> bool:
    host = (urlsplit(url).hostname or "").lower()
    return (
        host in LOCAL_HOSTS
        or host in EXAMPLE_DOMAINS
        or host.endswith(tuple(f".{d}" for d in EXAMPLE_DOMAINS))
        or host.endswith(RESERVED_SUFFIXES)
    )


def _inside(document: Path, target: str) -> bool:
    resolved = (document.parent / target.split("#", 1)[0]).resolve()
    return resolved.is_relative_to(ROOT) and resolved.exists()


def test_the_documents_are_found() -> None:
    names = {p.relative_to(ROOT).as_posix() for p in DOCUMENTS}
    assert {"README.md", "docs/api.md"} <= names


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_a_document_links_nothing_outside_the_repository(document: Path) -> None:
    text = document.read_text()
    outside = [url for url in URL.findall(text) if not _allowed(url)]
    assert outside == [], f"links to other sites: {outside}"
    for target in MARKDOWN_LINK.findall(text):
        if target.startswith(("http://", "https://", "#")):
            continue
        assert ":" not in target.split("/", 1)[0], f"a link of another scheme: {target}"
        assert _inside(document, target), f"{target} is not a file of this repository"
    for path in PARENT_PATH.findall(text):
        assert _inside(document, path), f"{path} leads outside the repository"


def test_nothing_names_the_design_document_a_clone_does_not_have() -> None:
    sources = _files("*.md", "*.py", "*.toml", "*.yml", "*.yaml", "*.cfg", "Makefile", "*.sh")
    assert len(sources) > 50
    naming = [
        p.relative_to(ROOT).as_posix()
        for p in sources
        if p != Path(__file__).resolve() and "shared/DESIGN" in p.read_text(errors="replace")
    ]
    assert naming == []
