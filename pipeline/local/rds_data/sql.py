"""The Data API's named parameters (`:name`) turned into PostgreSQL's positional ones (`$1`).

The statement is scanned as PostgreSQL lexes it, so a colon is a parameter only in plain SQL
text: not inside a string literal ('...', E'...', $tag$...$tag$), a quoted identifier, a
comment, nor in a `::type` cast. The same scan finds a second statement after a `;`, which
the Data API refuses (one statement per call).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_DOLLAR_TAG = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)?\$")


class SqlError(ValueError):
    """The statement cannot be sent as the Data API sends it (the message says why)."""


@dataclass(frozen=True)
class Translated:
    sql: str  # with $1, $2, ... in place of the names
    names: tuple[str, ...]  # the name of $1, $2, ... in order (a repeated name is one $n)


def translate(sql: str) -> Translated:
    """Replace each `:name` outside literals, identifiers and comments by `$n`."""
    out: list[str] = []
    names: list[str] = []
    i, n = 0, len(sql)
    ended = False  # a `;` was seen: only whitespace and comments may follow
    while i < n:
        ch = sql[i]
        nxt = sql[i + 1] if i + 1 < n else ""
        if ch == "-" and nxt == "-":
            end = sql.find("\n", i)
            end = n if end < 0 else end
            out.append(sql[i:end])
            i = end
            continue
        if ch == "/" and nxt == "*":
            end = _block_comment_end(sql, i)
            out.append(sql[i:end])
            i = end
            continue
        if ch.isspace():
            out.append(ch)
            i += 1
            continue
        if ended:
            raise SqlError("Multistatements aren't supported.")
        if ch == ";":
            ended = True
            out.append(ch)
            i += 1
            continue
        if ch == "'":
            backslashes = i > 0 and sql[i - 1] in "eE" and not _word_char(sql, i - 2)
            end = _quoted_end(sql, i, "'", backslashes)
            out.append(sql[i:end])
            i = end
            continue
        if ch == '"':
            end = _quoted_end(sql, i, '"', False)
            out.append(sql[i:end])
            i = end
            continue
        if ch == "$" and not _word_char(sql, i - 1):
            tag = _DOLLAR_TAG.match(sql, i)
            if tag:
                close = sql.find(tag.group(0), tag.end())
                if close < 0:
                    raise SqlError("unterminated dollar-quoted string")
                end = close + len(tag.group(0))
                out.append(sql[i:end])
                i = end
                continue
        if ch == ":":
            if nxt == ":":  # a cast: `x::type`
                out.append("::")
                i += 2
                continue
            name = _NAME.match(sql, i + 1)
            if name and sql[i - 1 : i] != ":":
                key = name.group(0)
                if key not in names:
                    names.append(key)
                out.append(f"${names.index(key) + 1}")
                i = name.end()
                continue
        if _word_char(sql, i):  # a whole word at once: `a$1` or `e'..'` stay words
            end = i + 1
            while end < n and _word_char(sql, end):
                end += 1
            out.append(sql[i:end])
            i = end
            continue
        out.append(ch)
        i += 1
    return Translated("".join(out), tuple(names))


def _word_char(sql: str, i: int) -> bool:
    return 0 <= i < len(sql) and (sql[i].isalnum() or sql[i] in "_$")


def _quoted_end(sql: str, start: int, quote: str, backslashes: bool) -> int:
    """The index after the literal or identifier opened at start (a doubled quote is one
    quote; in an E'' string a backslash escapes the next character)."""
    i = start + 1
    while i < len(sql):
        ch = sql[i]
        if backslashes and ch == "\\":
            i += 2
            continue
        if ch == quote:
            if sql[i + 1 : i + 2] == quote:
                i += 2
                continue
            return i + 1
        i += 1
    kind = "identifier" if quote == '"' else "string"
    raise SqlError(f"unterminated quoted {kind}")


def _block_comment_end(sql: str, start: int) -> int:
    """The index after the /* */ comment opened at start (they nest in PostgreSQL)."""
    depth, i = 0, start
    while i < len(sql):
        pair = sql[i : i + 2]
        if pair == "/*":
            depth += 1
            i += 2
        elif pair == "*/":
            depth -= 1
            i += 2
            if depth == 0:
                return i
        else:
            i += 1
    raise SqlError("unterminated /* comment")
