"""One generation DAG per campaign file (campaigns/*.yaml): generate_<name>.

plan (budget check, and the model's lifecycle on Bedrock: a campaign over its cap or on a model
past its end of life fails before any image, with the reason; a Legacy model is a warning) ->
one mapped task per prompt, in the `bedrock` pool -> summary (estimate, generated, refused,
failed). Images land in generated/ and flow through the same ingest path as uploads.

Each file is read and validated once, when Airflow parses this module (a local file read);
the tasks use that Campaign. A file that does not validate still gets its DAG (named after the
file), whose `plan` task fails with the reason, so the problem shows where the runs are.

**What a run reports**: `plan` logs the cost estimate; each mapped `generate` instance (one
per prompt) returns every image's outcome; `summary` logs the totals and puts them in the extra
of its `imgsim_campaign_images` asset event (Assets view): generated, existing (a retry found
the image), refused and failed, each refused or failed image with its prompt and reason.
`imgsim campaign run <name> --wait` shows the same per prompt in a terminal.

**When it fails**: `plan` failed: the campaign file does not validate or its estimate is over
the budget (the log says which; fix the YAML). `generate` failed after its retries: an error
other than Bedrock's answers (S3, DynamoDB, the connection; the log has it); fix it and clear
the task: images already stored are found again, not painted twice. An image refused by the
content filter (`refused`), or still throttled or timed out after botocore's retries
(`failed`; lower the `bedrock` pool's slots or raise the model's quota), does not fail the
run: `summary` counts it, with its reason.
"""

from __future__ import annotations

import logging
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk import DAG, Asset, dag, get_current_context, task
from airflow.sdk.exceptions import AirflowFailException

from pipeline.generation.bedrock import ModelUnavailable
from pipeline.generation.campaigns import (
    Campaign,
    CampaignError,
    generate_planned,
    load_campaign,
    plan_prompt,
)

if TYPE_CHECKING:
    from pipeline.generation.bedrock import BedrockImages
    from pipeline.ingest.ingestor import Ingestor

log = logging.getLogger(__name__)

AWS_CONN_ID = "aws_default"
POOL = "bedrock"
campaign_images = Asset(name="imgsim_campaign_images")  # one event per run, its report as extra
# campaigns/ beside dags/ in the repo, inside the dags folder in the MWAA bundle
_HERE = Path(__file__).resolve().parent
_DEFAULT_CAMPAIGNS = next(
    (d for d in (_HERE / "campaigns", _HERE.parent / "campaigns") if d.is_dir()),
    _HERE.parent / "campaigns",
)
CAMPAIGNS_DIR = Path(os.environ.get("IMGSIM_CAMPAIGNS_DIR", _DEFAULT_CAMPAIGNS))


def _services() -> tuple[Ingestor, BedrockImages]:
    from pipeline.airflow_connection import settings_from_connection
    from pipeline.generation.bedrock import CAMPAIGN_BUDGET, BedrockImages
    from pipeline.ingest.ingestor import Ingestor

    settings = settings_from_connection(AWS_CONN_ID)
    return Ingestor.from_settings(settings), BedrockImages(settings, budget=CAMPAIGN_BUDGET)


def build(path: Path) -> DAG:
    try:
        campaign: Campaign | None = load_campaign(path)
        problem = ""
    except CampaignError as exc:
        campaign, problem = None, str(exc)

    def loaded() -> Campaign:
        if campaign is None:
            raise AirflowFailException(problem)
        return campaign

    @dag(
        dag_id=f"generate_{campaign.name if campaign else path.stem}",
        schedule=campaign.schedule if campaign else None,
        start_date=datetime(2026, 1, 1, tzinfo=UTC),
        catchup=False,
        max_active_runs=1,
        tags=["imgsim", "generation"],
        doc_md=f"Campaign file: `{path.name}`\n\n{__doc__}",
        default_args={"retries": 2, "retry_delay": timedelta(seconds=30)},
    )
    def campaign_dag() -> None:
        @task
        def plan() -> list[str]:
            planned = loaded()
            try:
                estimate = planned.check_budget()
            except CampaignError as exc:
                raise AirflowFailException(str(exc)) from None
            log.info("cost estimate: %d images, $%.2f", estimate["images"], estimate["dollars"])
            _, bedrock = _services()
            try:
                bedrock.check(planned.model.model_id)
            except ModelUnavailable as exc:
                raise AirflowFailException(str(exc)) from None
            return list(planned.prompts)

        @task(pool=POOL)
        def generate(prompt: str) -> dict[str, Any]:
            planned = loaded()
            ingestor, bedrock = _services()
            outcomes = []
            for item in plan_prompt(planned, get_current_context()["run_id"], prompt):
                status, reason = generate_planned(planned, item, ingestor, bedrock)
                outcomes.append(
                    {
                        "index": item.index,
                        "image_id": item.image_id,
                        "status": status,
                        "reason": reason,
                    }
                )
            return {"prompt": prompt, "outcomes": outcomes}

        @task(outlets=[campaign_images])
        def summary(results: list[dict[str, Any]]) -> dict[str, Any]:
            planned = loaded()
            counts = {"generated": 0, "existing": 0, "refused": 0, "failed": 0}
            refusals = []
            for result in results:
                for outcome in result["outcomes"]:
                    counts[outcome["status"]] += 1
                    if outcome["reason"]:
                        refusals.append({"prompt": result["prompt"], **outcome})
            report: dict[str, Any] = {
                **counts,
                "estimate": planned.estimate(),
                "not_generated": refusals,
            }
            log.info("campaign %s: %s", planned.name, report)
            extra: dict[str, Any] = {"campaign": planned.name, **report}
            get_current_context()["outlet_events"][campaign_images].extra = extra
            return report

        # an XComArg: the mapped results, resolved at run time
        summary(generate.expand(prompt=plan()))  # type: ignore[arg-type]

    return campaign_dag()


for _path in sorted(CAMPAIGNS_DIR.glob("*.yaml")):
    globals()[f"generate_{_path.stem}"] = build(_path)
