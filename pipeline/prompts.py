"""Prompt normalization: `Fork ` and `fork` are one prompt."""

from __future__ import annotations

import re
import unicodedata

_SPACES = re.compile(r"\s+")


class InvalidPrompt(ValueError):
    """A prompt that cannot be used: empty after normalization, or too long."""


def normalize_prompt(prompt: str) -> str:
    """Trim, collapse runs of whitespace to one space, lowercase."""
    return _SPACES.sub(" ", prompt).strip().lower()


def checked_prompt(prompt: object, max_chars: int) -> str:
    """The normalized prompt, or InvalidPrompt saying why it cannot be used."""
    if not isinstance(prompt, str):
        raise InvalidPrompt("prompt must be a string")
    normalized = normalize_prompt(prompt)
    if not normalized:
        raise InvalidPrompt("prompt is empty")
    control = next((c for c in normalized if unicodedata.category(c) in ("Cc", "Cs")), None)
    if control is not None:
        # NUL and other control characters would be stored and echoed back to every reader
        raise InvalidPrompt(f"prompt contains the control character U+{ord(control):04X}")
    if len(normalized) > max_chars:
        raise InvalidPrompt(f"prompt has {len(normalized)} characters; the limit is {max_chars}")
    return normalized
