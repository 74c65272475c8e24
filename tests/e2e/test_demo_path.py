"""The demo's path, as a person walks it, on a stack of its own: `up`; photos dropped into the
bucket as the demo drops them; Airflow's scheduler embeds them (the embed queue triggers the
DAG); the demo's closing lines name the gallery, which searches a photo from disk in headless
Chromium and opens a record; `down` leaves no process behind."""

from __future__ import annotations

import os

import psutil
import requests
from playwright.sync_api import expect

from pipeline.local.demo import PHOTOS, await_embedding, drop_photos, where_to_look
from pipeline.local.processes import free_port
from pipeline.settings import Settings
from tests.browser.gallery_page import Gallery, chromium, keep_screenshot
from tests.helpers import still_running
from tests.polling import eventually
from tests.process_guard import exports, run_imgsim, services, watch_stack_dir
from tests.stack_env import vector_db_env

PROMPT = "demo path photos"
SUBJECTS = ("chelsea", "coffee", "rocket")  # 8 views each in samples/photos
K = 12  # the page's default top-k


def _cli(env: dict[str, str], *args: str, code: int = 0) -> str:
    """`imgsim <args>` as a user runs it (`up` on busy cores takes minutes)."""
    watch_stack_dir(env["IMGSIM_LOCAL_DIR"])
    result = run_imgsim(args, env, 900)
    assert result.returncode == code, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


def _processes(status: dict) -> list[psutil.Process]:
    family = []
    for part in ("moto", "api", "sagemaker", "bedrock", "airflow", "mwaa"):
        parent = psutil.Process(status[part]["pid"])
        family += [parent, *parent.children(recursive=True)]
    return family


def _asset_triggered_successes(airflow_url: str, timeout: float = 120) -> int:
    """Queue-triggered embed runs that succeeded, waiting for the first: the images are
    embedded at `commit`, a little before the run's last tasks (`follow_up`) end."""

    def succeeded() -> int:
        runs = requests.get(f"{airflow_url}/api/v2/dags/embed_images/dagRuns", timeout=30)
        return sum(
            r["run_type"] == "asset_triggered" and r["state"] == "success"
            for r in runs.json()["dag_runs"]
        )

    return eventually(succeeded, timeout, 2, "a queue-triggered embed_images run succeeded")


def test_up_uploads_embedded_by_airflow_a_lookup_in_the_gallery_then_down(tmp_path):
    env = {
        **os.environ,
        "IMGSIM_LOCAL_DIR": str(tmp_path / "stack"),
        **{
            f"IMGSIM_LOCAL_{p}_PORT": str(free_port())
            for p in ("MOTO", "API", "SAGEMAKER", "BEDROCK", "AIRFLOW", "MWAA")
        },
        **vector_db_env(),
    }
    env.pop("AIRFLOW_HOME", None)
    family: list[psutil.Process] = []
    try:
        status = services(_cli(env, "--json", "up"))
        exported = exports(_cli(env, "env"))
        family = _processes(status)
        api, airflow = exported["IMGSIM_API_URL"], status["airflow"]["url"]
        ids = drop_photos(Settings.from_env(exported), SUBJECTS, PROMPT, id_prefix="e2e-")
        records = await_embedding(api, ids, timeout=600)
        assert {r.get("status") for r in records.values()} == {"embedded"}, records
        assert _asset_triggered_successes(airflow) >= 1  # the scheduler embedded them
        model = requests.get(f"{api}/embeddings/{ids[0]}", timeout=30).json()["model_id"]

        # the demo's closing lines, for this stack: every place they name answers
        urls = [line.rsplit(" ", 1)[1] for line in where_to_look(api, airflow).splitlines()]
        assert urls == [f"{api}/", airflow, f"{api}/docs"]
        assert [requests.get(url, timeout=30).status_code for url in urls] == [200, 200, 200]

        with chromium() as browser:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            gallery = Gallery(page).open(api)
            assert f"{PROMPT} ({len(ids)} images, {model})" in gallery.wait_for_prompts()
            gallery.wait_for_results(K)  # on opening: the prompt's newest image against the others
            gallery.by_id("file").set_input_files(PHOTOS / "coffee" / "original.jpg")
            gallery.by_id("search-file").click()
            expect(gallery.by_id("query")).to_contain_text("your photo original.jpg")
            expect(gallery.by_id("summary")).not_to_contain_text("candidates")
            shown = gallery.wait_for_results(K)
            # the same photo first, with the cosine of identical vectors
            assert shown[0][0] == "e2e-coffee-original" and shown[0][1] >= 0.999, shown
            assert [s for _, s in shown] == sorted((s for _, s in shown), reverse=True)
            record = gallery.open_record(0)
            assert record["status"] == "embedded" and record["prompt"] == PROMPT
            assert gallery.loaded_width("record-image") > 0
            expect(gallery.by_id("error")).to_be_hidden()
            screenshot = tmp_path / "gallery.png"
            page.screenshot(path=screenshot, full_page=True)
            keep_screenshot(screenshot)
    finally:
        down = _cli(env, "down")
    assert down.strip() == "stopped"
    _, alive = psutil.wait_procs(family, timeout=10)
    running = [p for p in alive if still_running(p)]
    assert running == [], [(p.pid, p.cmdline()) for p in running]
    assert services(_cli(env, "--json", "status", code=3)) == {"running": False}
