"""dags/generate_campaign.py with dag.test() on the local stack and the Bedrock emulator."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline import aws
from pipeline.generation.bedrock import BedrockImages
from pipeline.generation.campaigns import generate_planned, load_campaign, plan_prompt
from pipeline.generation.families import DEFAULT_IMAGE_MODEL
from pipeline.ingest.ingestor import Ingestor
from pipeline.local.bedrock.server import BedrockEmulator
from pipeline.storage.images_table import ImageStore
from tests.helpers import drain_messages

TITAN = "amazon.titan-image-generator-v2:0"  # Legacy, past its end of life on 2026-06-30
CAMPAIGN = """
name: {name}
schedule: null
model_id: {model}
width: 256
height: 256
images_per_prompt: {n}
prompts: {prompts}
budget: {{max_images: {max_images}, max_dollars: 1.0}}
"""


@pytest.fixture
def campaign_env(airflow_stack, monkeypatch, tmp_path):
    settings, _ = airflow_stack
    bedrock = BedrockEmulator().start()
    connection = json.loads(__import__("os").environ["AIRFLOW_CONN_AWS_DEFAULT"])
    for service in ("bedrock-runtime", "bedrock"):  # the emulator serves both
        connection["extra"]["service_config"][service] = {"endpoint_url": bedrock.url}
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps(connection))
    # dag.test() parses the DAG folder: the campaign files of this test are the ones it sees
    monkeypatch.setenv("IMGSIM_CAMPAIGNS_DIR", str(tmp_path))
    airflow = Path(sys.executable).parent / "airflow"
    subprocess.run(
        [str(airflow), "pools", "set", "bedrock", "2", "Bedrock InvokeModel"],
        check=True,
        capture_output=True,
        timeout=120,
    )

    def write(name: str, prompts: list[str], n: int, max_images: int = 20) -> Path:
        path = tmp_path / f"{name}.yaml"
        path.write_text(
            CAMPAIGN.format(
                name=name,
                model=DEFAULT_IMAGE_MODEL,
                prompts=json.dumps(prompts),
                n=n,
                max_images=max_images,
            )
        )
        return path

    yield settings.with_endpoint(bedrock.url, ("bedrock-runtime", "bedrock")), write
    bedrock.stop()


def _generated(settings) -> list[str]:
    listing = aws.client(settings, "s3").list_objects_v2(
        Bucket=settings.bucket, Prefix="generated/"
    )
    return sorted(o["Key"] for o in listing.get("Contents", []))


def test_a_campaign_run_generates_records_and_queues(campaign_env):
    from dags.generate_campaign import build

    settings, write = campaign_env
    path = write("owls", ["An Owl", "a fox", "something forbidden"], n=2)
    campaign = load_campaign(path)
    dag = build(path)
    # the file was read when the DAG was parsed: its tasks do not read it again
    path.write_text("name: owls\nprompts: [a changed prompt]\n")
    run = dag.test()
    assert run.state == "success"
    keys = _generated(settings)
    assert len(keys) == 4  # 2 prompts x 2 images; the forbidden prompt was refused
    records = [ImageStore(settings).get(Path(k).stem) for k in keys]
    assert {r["prompt"] for r in records} == {"an owl", "a fox"}
    assert all(r["source"] == "generated" and r["status"] == "pending" for r in records)
    assert all(r["generation"]["modifiers"]["campaign"] == "owls" for r in records)
    assert all(r["modified_prompt"].startswith(r["prompt"] + ", ") for r in records)
    assert len(drain_messages(settings, settings.embed_queue)) == 4

    summary = next(ti for ti in run.get_task_instances() if ti.task_id == "summary")
    assert summary.state == "success"

    # a retry of the same run (same run_id) makes no extra image
    ingestor, bedrock = Ingestor.from_settings(settings), BedrockImages(settings)
    for prompt in campaign.prompts:
        for item in plan_prompt(campaign, run.run_id, prompt):
            status, _ = generate_planned(campaign, item, ingestor, bedrock)
            assert status in ("existing", "refused")
    assert _generated(settings) == keys


def test_the_budget_cap_stops_a_campaign_before_any_image(campaign_env):
    from dags.generate_campaign import build

    settings, write = campaign_env
    path = write("greedy", ["a cat", "a dog"], n=6, max_images=10)
    run = build(path).test()
    assert run.state == "failed"
    plan = next(ti for ti in run.get_task_instances() if ti.task_id == "plan")
    assert plan.state == "failed"
    assert _generated(settings) == []
    with pytest.raises(Exception, match="12 images planned, over its budget of 10"):
        load_campaign(path).check_budget()


def test_an_invalid_campaign_file_gets_a_dag_whose_plan_fails_with_the_reason(campaign_env):
    from airflow.sdk.exceptions import AirflowFailException

    from dags.generate_campaign import build

    settings, write = campaign_env
    path = write("broken", [], n=1)
    dag = build(path)  # parsing does not fail: the DAG shows in the UI with its runs
    assert dag.dag_id == "generate_broken"
    with pytest.raises(AirflowFailException, match="needs prompts"):
        dag.get_task("plan").python_callable()
    run = dag.test()
    assert run.state == "failed"
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert states["plan"] == "failed" and states["summary"] == "upstream_failed"
    assert _generated(settings) == []


def test_invalid_campaign_files_are_refused_with_the_reason(tmp_path):
    from pipeline.generation.campaigns import CampaignError

    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nprompts: []\nbudget: {max_images: 1, max_dollars: 1}\n")
    with pytest.raises(CampaignError, match="needs prompts"):
        load_campaign(bad)
    bad.write_text(
        "name: x\nmodel_id: openai.dall-e\nprompts: [a]\nbudget: {max_images: 1, max_dollars: 1}\n"
    )
    with pytest.raises(CampaignError, match="not a supported"):
        load_campaign(bad)


def test_a_campaign_on_a_model_past_its_end_of_life_fails_its_plan(campaign_env):
    from dags.generate_campaign import build

    settings, write = campaign_env
    path = write("retired", ["an owl"], n=1)
    path.write_text(path.read_text().replace(DEFAULT_IMAGE_MODEL, TITAN))
    run = build(path).test()
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert run.state == "failed" and states["plan"] == "failed"
    assert _generated(settings) == []
