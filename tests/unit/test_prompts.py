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
