"""One generation DAG per campaign file (campaigns/*.yaml): generate_<name>.

plan (budget check: a campaign over its cap fails before any image, with the reason) ->
one mapped task per prompt, in the `bedrock` pool -> summary (estimate, generated, refused,
failed). Images land in generated/ and flow through the same ingest path as uploads.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

from airflow.sdk import dag, task

AWS_CONN_ID = "aws_default"
POOL = "bedrock"
CAMPAIGNS_DIR = Path(
    os.environ.get("IMGSIM_CAMPAIGNS_DIR", Path(__file__).resolve().parents[1] / "campaigns")
)


def _services():
    from pipeline.airflow_connection import settings_from_connection
    from pipeline.generation.bedrock import BedrockImages
    from pipeline.ingest.ingestor import Ingestor

    settings = settings_from_connection(AWS_CONN_ID)
    return Ingestor.from_settings(settings), BedrockImages(settings)


def build(path: Path):
    import yaml

    raw = yaml.safe_load(path.read_text()) or {}
    name = str(raw.get("name", path.stem))

    @dag(
        dag_id=f"generate_{name}",
        schedule=raw.get("schedule"),
        start_date=datetime(2026, 1, 1, tzinfo=UTC),
        catchup=False,
        max_active_runs=1,
        tags=["imgsim", "generation"],
        doc_md=f"Campaign file: `{path.name}`",
        default_args={"retries": 2, "retry_delay": timedelta(seconds=30)},
    )
    def campaign_dag():
        @task
        def plan() -> list[str]:
            from airflow.exceptions import AirflowFailException

            from pipeline.generation.campaigns import CampaignError, load_campaign

            try:
                campaign = load_campaign(path)
                estimate = campaign.check_budget()
            except CampaignError as exc:
                raise AirflowFailException(str(exc)) from None
            print(f"cost estimate: {estimate['images']} images, ${estimate['dollars']:.2f}")
            return list(campaign.prompts)

        @task(pool=POOL)
        def generate(prompt: str, run_id: str) -> dict:
            from pipeline.generation.campaigns import generate_planned, load_campaign, plan_prompt

            campaign = load_campaign(path)
            ingestor, bedrock = _services()
            outcomes = []
            for item in plan_prompt(campaign, run_id, prompt):
                status, reason = generate_planned(campaign, item, ingestor, bedrock)
                outcomes.append(
                    {
                        "index": item.index,
                        "image_id": item.image_id,
                        "status": status,
                        "reason": reason,
                    }
                )
            return {"prompt": prompt, "outcomes": outcomes}

        @task
        def summary(results: list[dict]) -> dict:
            from pipeline.generation.campaigns import load_campaign

            counts = {"generated": 0, "existing": 0, "refused": 0, "failed": 0}
            refusals = []
            for result in results:
                for outcome in result["outcomes"]:
                    counts[outcome["status"]] += 1
                    if outcome["reason"]:
                        refusals.append({"prompt": result["prompt"], **outcome})
            estimate = load_campaign(path).estimate()
            report = {**counts, "estimate": estimate, "not_generated": refusals}
            print(f"campaign {name}: {report}")
            return report

        summary(generate.expand(prompt=plan()))

    return campaign_dag()


for _path in sorted(CAMPAIGNS_DIR.glob("*.yaml")):
    globals()[f"generate_{_path.stem}"] = build(_path)
