"""The links of the project's Markdown pages, checked offline: a relative link names a file or
folder that exists, an anchor names a heading (GitHub's slugs) or an explicit anchor of its
page, and an external link is a well-formed http(s) or mailto URL (never fetched)."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

FENCE = re.compile(r"^\s*(```|~~~)")
CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1")
# [text](target "title") and ![alt](target); the target may be <wrapped>
INLINE = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*(<[^>]*>|[^)\s]+)(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*(<[^>]*>|\S+)")
HTML_TARGET = re.compile(r"<(?:a|img)\s[^>]*?(?:href|src)=\"([^\"]+)\"", re.IGNORECASE)
HTML_ANCHOR = re.compile(r"<a\s[^>]*?(?:name|id)=\"([^\"]+)\"", re.IGNORECASE)
HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")


@dataclass(frozen=True)
class Link:
    page: Path
    line: int
    target: str

    def __str__(self) -> str:
        return f"{self.page}:{self.line}: {self.target}"


def _prose_lines(text: str) -> Iterator[tuple[int, str]]:
    """(line number, line) outside fenced code blocks."""
    fenced = False
    for number, line in enumerate(text.splitlines(), 1):
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            yield number, line


def links(page: Path) -> list[Link]:
    found = []
    for number, text in _prose_lines(page.read_text(encoding="utf-8")):
        line = CODE_SPAN.sub("", text)  # `[x](y)` in code is not a link
        targets = [m.group(1) for m in INLINE.finditer(line)]
        targets += [m.group(1) for m in REFERENCE.finditer(line)]
        targets += [m.group(1) for m in HTML_TARGET.finditer(line)]
        found += [Link(page, number, t.strip("<>")) for t in targets]
    return found


def slug(heading: str) -> str:
    """GitHub's anchor for a heading's text: markup dropped, lower case, punctuation other
    than hyphens and underscores removed, each space a hyphen."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link: its text
    text = re.sub(r"<[^>]+>", "", text).replace("`", "").replace("*", "")
    kept = (c for c in text.lower() if c in "-_ " or unicodedata.category(c)[0] in "LMN")
    return "".join(kept).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """Every anchor of a page: its headings' slugs (a repeated one numbered -1, -2, ... as
    GitHub does) and its explicit <a name=...> and <a id=...>."""
    found: set[str] = set()
    seen: dict[str, int] = {}
    for _, line in _prose_lines(page.read_text(encoding="utf-8")):
        found.update(HTML_ANCHOR.findall(line))
        if match := HEADING.match(line):
            base = slug(match.group(2))
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
    return found


def problem(link: Link, root: Path) -> str | None:
    """Why a link is broken, or None."""
    parts = urlsplit(link.target)
    if parts.scheme in ("http", "https"):
        if " " in link.target or "." not in (parts.hostname or ""):
            return "not a well-formed URL"
        return None
    if parts.scheme == "mailto":
        return None if "@" in parts.path else "not a mail address"
    if parts.scheme:
        return f"a {parts.scheme}: link (only relative, http(s) and mailto links are checked)"
    path, _, fragment = link.target.partition("#")
    target = (link.page.parent / unquote(path)).resolve() if path else link.page
    if not target.is_relative_to(root.resolve()):
        return "points outside the repository"
    if not target.exists():
        return "no such file"
    if fragment:
        if target.is_dir() or target.suffix != ".md":
            return "an anchor on something that is not a Markdown page"
        if unquote(fragment) not in anchors(target):
            return f"no heading or anchor #{fragment} in {target.name}"
    return None
