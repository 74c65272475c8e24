"""The one way tests wait: `eventually` calls a condition until it gives something truthy, so
every wait has a deadline and a failure says what was awaited and what was last seen."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def eventually(
    condition: Callable[[], T | None],
    timeout: float,
    interval: float = 0.2,
    message: str | Callable[[], str] = "the condition",
    *,
    ignoring: tuple[type[BaseException], ...] = (),
) -> T:
    """Return the first truthy value of `condition()`, called every `interval` seconds; raise
    AssertionError naming `message` (or what it returns, when what was last seen is not in the
    value) and the last value once `timeout` seconds have passed.
    Exceptions of the `ignoring` types count as "not yet" (a server still starting); any
    other exception fails at once."""
    if timeout <= 0 or interval <= 0:
        raise ValueError(f"timeout and interval must be positive, not {timeout} and {interval}")
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = condition()
        except ignoring as exc:
            last: object = exc
        else:
            if value:
                return value
            last = value
        if time.monotonic() >= deadline:
            what = message() if callable(message) else message
            raise AssertionError(f"{what}: not within {timeout:g} s (last: {last!r:.1000})")
        time.sleep(interval)
