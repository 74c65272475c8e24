import pytest

from pipeline.prompts import InvalidPrompt, checked_prompt, normalize_prompt


@pytest.mark.parametrize(
    "raw,expected",
    [
        ("Fork ", "fork"),
        ("fork", "fork"),
        ("  A   red\tFORK\n", "a red fork"),
        ("", ""),
        ("Ünïcode  Café", "ünïcode café"),
    ],
)
def test_normalize_prompt(raw, expected):
    assert normalize_prompt(raw) == expected


def test_checked_prompt_refuses_empty_long_and_non_strings():
    with pytest.raises(InvalidPrompt, match="empty"):
        checked_prompt("   ", 10)
    with pytest.raises(InvalidPrompt, match="limit is 10"):
        checked_prompt("x" * 11, 10)
    with pytest.raises(InvalidPrompt, match="string"):
        checked_prompt(42, 10)
    assert checked_prompt(" Fork ", 10) == "fork"


@pytest.mark.parametrize("raw", ["a\x00fork", "fork\x1b[31m", "\x7ffork", "fork\x9bx", "a\ud800b"])
def test_checked_prompt_refuses_control_characters(raw):
    with pytest.raises(InvalidPrompt, match="control character"):
        checked_prompt(raw, 100)


def test_whitespace_controls_are_collapsed_not_refused():
    assert checked_prompt("a\tred\r\nfork\x0b", 100) == "a red fork"
