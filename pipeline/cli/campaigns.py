"""`campaign run`: trigger a campaign's DAG through Airflow's REST API and follow it prompt by
prompt (the DAG maps one `generate` task per prompt, in the order `plan` returns them)."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from rich.live import Live
from rich.table import Table

from pipeline.cli.airflow_api import AirflowClient
from pipeline.cli.errors import FAILED, TIMED_OUT, CliError
from pipeline.cli.output import Output

FINISHED = ("success", "failed")
OUTCOMES = ("generated", "existing", "refused", "failed")
POLL_SECONDS = 2.0


def prompt_rows(
    prompts: list[str], generate_states: dict[int, str | None], results: dict[int, Any]
) -> list[dict[str, Any]]:
    """One row per prompt: its task's state and, once it finished, its outcome counts."""
    rows = []
    for index, prompt in enumerate(prompts):
        outcomes = (results.get(index) or {}).get("outcomes", [])
        counts = Counter(o["status"] for o in outcomes)
        row: dict[str, Any] = {"prompt": prompt, "state": generate_states.get(index) or "waiting"}
        row.update({name: counts.get(name, 0) if outcomes else None for name in OUTCOMES})
        rows.append(row)
    return rows


def _table(title: str, rows: list[dict[str, Any]]) -> Table:
    table = Table(title=title, title_justify="left")
    table_columns = ("prompt", "state", *OUTCOMES)
    for column in table_columns:
        table.add_column(column)
    for row in rows:
        table.add_row(
            *("" if row[c] is None else str(row[c]) for c in ("prompt", "state", *OUTCOMES))
        )
    return table


class CampaignWatch:
    """What one run has done so far, read from its task instances and return values."""

    def __init__(self, airflow: AirflowClient, dag_id: str, run_id: str) -> None:
        self.airflow, self.dag_id, self.run_id = airflow, dag_id, run_id
        self.prompts: list[str] | None = None
        self.results: dict[int, Any] = {}
        self.failed: list[str] = []

    def poll(self) -> tuple[str, list[dict[str, Any]]]:
        state = str(self.airflow.run(self.dag_id, self.run_id)["state"])
        tis = self.airflow.task_instances(self.dag_id, self.run_id)
        if self.prompts is None:
            self.prompts = self.airflow.return_value(self.dag_id, self.run_id, "plan")
        generate: dict[int, str | None] = {
            ti["map_index"]: ti["state"] for ti in tis if ti["task_id"] == "generate"
        }
        for index, ti_state in generate.items():
            if ti_state == "success" and index not in self.results:
                self.results[index] = self.airflow.return_value(
                    self.dag_id, self.run_id, "generate", index
                )
        self.failed = sorted(ti["task_id"] for ti in tis if ti["state"] == "failed")
        return state, prompt_rows(self.prompts or [], generate, self.results)


def run_campaign(
    airflow: AirflowClient, name: str, wait: bool, timeout: float, out: Output
) -> dict[str, Any]:
    dag_id = f"generate_{name}"
    run_id = airflow.trigger(dag_id)
    out.say(f"campaign {name}: run {run_id} of DAG {dag_id} triggered")
    result: dict[str, Any] = {"dag_id": dag_id, "run_id": run_id, "state": "queued"}
    if not wait:
        out.data(result)
        return result
    watch = CampaignWatch(airflow, dag_id, run_id)
    deadline = time.monotonic() + timeout
    state, rows = "queued", list[dict[str, Any]]()
    live_console = out.errors if out.as_json else out.console
    with Live(_table(f"{dag_id}: {state}", rows), console=live_console) as live:
        while True:
            state, rows = watch.poll()
            live.update(_table(f"{dag_id}: {state}", rows))
            if state in FINISHED or time.monotonic() > deadline:
                break
            time.sleep(POLL_SECONDS)
    live_console.line()  # a console that is not a terminal gets the last table without one
    summary = airflow.return_value(dag_id, run_id, "summary") if state == "success" else None
    result.update(state=state, prompts=rows, summary=summary)
    out.data(result)
    if summary:
        counts = ", ".join(f"{k} {summary.get(k, 0)}" for k in OUTCOMES)
        estimate = summary.get("estimate") or {}
        out.say(
            f"campaign {name}: {state}; {counts} (estimate: {estimate.get('images')} images, "
            f"${estimate.get('dollars', 0):.2f})"
        )
    if state not in FINISHED:
        raise CliError(f"run {run_id} still {state} after {timeout:g} s", TIMED_OUT)
    if state != "success":
        failed = ", ".join(watch.failed) or "?"
        raise CliError(
            f"run {run_id} failed (failed tasks: {failed}; their logs in "
            f"{airflow.run_page(dag_id, run_id)})",
            FAILED,
        )
    return result
