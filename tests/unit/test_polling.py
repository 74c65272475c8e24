"""tests/polling.py: the first truthy value comes back; a timeout names what was awaited and
what was last seen; only the exceptions asked for are retried."""

from __future__ import annotations

import itertools

import pytest

from tests.polling import eventually


def test_returns_the_first_truthy_value():
    counter = itertools.count()
    assert eventually(lambda: next(counter) >= 3 and "ready", 5, 0.01) == "ready"


def test_a_timeout_names_the_wait_and_the_last_value():
    with pytest.raises(
        AssertionError, match=r"^the queue drained: not within 0.05 s \(last: \[\]\)"
    ):
        eventually(lambda: [], 0.05, 0.01, "the queue drained")


def test_only_the_exceptions_asked_for_are_retried():
    calls = itertools.count()

    def starting() -> str:
        if next(calls) < 2:
            raise ConnectionError("refused")
        return "up"

    assert eventually(starting, 5, 0.01, "the server", ignoring=(ConnectionError,)) == "up"

    def refused() -> None:
        raise ConnectionRefusedError("refused")

    with pytest.raises(AssertionError, match=r"the server: not within .*ConnectionRefusedError"):
        eventually(refused, 0.05, 0.01, "the server", ignoring=(OSError,))
    with pytest.raises(KeyError):
        eventually(lambda: {}["missing"], 5, 0.01, ignoring=(ConnectionError,))


def test_a_wait_needs_a_positive_timeout_and_interval():
    with pytest.raises(ValueError, match="must be positive"):
        eventually(lambda: True, 0, 0.1)
