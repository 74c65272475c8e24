"""The bound of an image's embedding attempts: what a run does with a pending record."""

from __future__ import annotations

from datetime import UTC, datetime

from pipeline.embedding.attempts import (
    GAVE_UP,
    MAX_ATTEMPTS,
    RETRY_AFTER_MINUTES,
    Step,
    gave_up_reason,
    next_step,
    retry_before,
)

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def _record(attempts: int, run: str = "run-0", at: str = "2026-11-22T11:00:00.000Z") -> dict:
    if not attempts:
        return {"status": "pending"}
    return {"embed_attempts": attempts, "embed_attempt_run": run, "embed_attempted_at": at}


def test_a_record_is_planned_until_its_attempts_run_out_then_given_up():
    before = retry_before(NOW, RETRY_AFTER_MINUTES)
    steps = [next_step(_record(n), "run-new", before) for n in range(MAX_ATTEMPTS + 2)]
    assert steps == [Step.PLAN] * MAX_ATTEMPTS + [Step.GIVE_UP] * 2
    assert MAX_ATTEMPTS == 4 and RETRY_AFTER_MINUTES < 15  # the schedule retries at the latest


def test_an_attempt_that_began_within_the_retry_delay_waits_unless_it_is_this_run_s_own():
    before = retry_before(NOW, RETRY_AFTER_MINUTES)
    assert before == "2026-11-22T11:50:00.000Z"
    recent = _record(1, at="2026-11-22T11:55:00.000Z")
    assert next_step(recent, "run-new", before) is Step.WAIT
    assert next_step(recent, "run-new", None) is Step.PLAN  # no delay asked for
    assert next_step(_record(1, at="2026-11-22T11:49:59.999Z"), "run-new", before) is Step.PLAN
    # a retried gather of the run that counted the attempt plans it again, last one included
    assert next_step(recent, "run-0", before) is Step.PLAN
    assert next_step(_record(MAX_ATTEMPTS, run="run-0"), "run-0", before) is Step.PLAN


def test_the_reason_names_the_attempts_the_last_run_and_a_bounded_cause():
    assert gave_up_reason(4, "run-9") == f"{GAVE_UP}: 4 runs did not embed it; the last was run-9"
    long = gave_up_reason(4, "run-9", "transform: " + "x" * 5000)
    assert long.startswith(f"{GAVE_UP}: 4 runs did not embed it; the last was run-9: transform: ")
    assert len(long) < 600
