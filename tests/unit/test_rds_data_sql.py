"""The Data API's named parameters as the emulator reads them: `:name` in SQL text only."""

from __future__ import annotations

import pytest

from pipeline.local.rds_data.sql import SqlError, translate


@pytest.mark.parametrize(
    ("sql", "expected", "names"),
    [
        ("SELECT :a, :b, :a", "SELECT $1, $2, $1", ("a", "b")),
        ("SELECT x::vector <=> :q::vector", "SELECT x::vector <=> $1::vector", ("q",)),
        ("SELECT ':a', \"b:c\", E'\\' :d', :e", "SELECT ':a', \"b:c\", E'\\' :d', $1", ("e",)),
        ("SELECT 'it''s :x', :y", "SELECT 'it''s :x', $1", ("y",)),
        ("SELECT $$ :a $$, $t$ :b $t$, :c", "SELECT $$ :a $$, $t$ :b $t$, $1", ("c",)),
        (
            "SELECT 1 -- :a\n, /* :b /* :c */ */ :d",
            "SELECT 1 -- :a\n, /* :b /* :c */ */ $1",
            ("d",),
        ),
        ("SELECT a$1, '50%' LIKE :p;", "SELECT a$1, '50%' LIKE $1;", ("p",)),
    ],
)
def test_names_outside_literals_casts_and_comments_become_positions(sql, expected, names):
    translated = translate(sql)
    assert (translated.sql, translated.names) == (expected, names)


@pytest.mark.parametrize(
    "sql", ["SELECT 1; SELECT 2", "SELECT 'x", "SELECT /* open", "SELECT $a$ never closed"]
)
def test_refused(sql):
    with pytest.raises(SqlError):
        translate(sql)
