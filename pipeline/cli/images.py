"""`upload`, `similar` and `prompts`: the image routes of the API, from a terminal."""

from __future__ import annotations

import base64
import time
from pathlib import Path
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from pipeline.cli.errors import FAILED, TIMED_OUT, CliError
from pipeline.cli.http_api import ApiClient
from pipeline.cli.output import Output

PENDING = "pending"
POLL_SECONDS = 1.0


def _progress(out: Output) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=out.errors if out.as_json else out.console,
    )


def _encoded(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def send(api: ApiClient, path: Path, prompt: str | None) -> dict[str, Any]:
    """POST /images for one file: its row (refused files keep the API's reason)."""
    body: dict[str, Any] = {"image_data": _encoded(path)}
    if prompt:
        body["prompt"] = prompt
    answer = api.call("POST", "/images", json=body)
    if not answer.ok:
        return {"file": str(path), "image_id": None, "status": "refused", "detail": answer.error()}
    return {"file": str(path), "image_id": answer.body["image_id"], "status": answer.body["status"]}


def wait_for_embedding(
    api: ApiClient, rows: list[dict[str, Any]], timeout: float, out: Output
) -> bool:
    """Poll the records of pending rows until none is pending; False when time ran out."""
    waiting = {row["image_id"]: row for row in rows if row["status"] == PENDING}
    deadline = time.monotonic() + timeout
    with _progress(out) as progress:
        bar = progress.add_task("embedding", total=len(waiting))
        while waiting and time.monotonic() < deadline:
            for image_id in list(waiting):
                record = api.json("GET", f"/images/{image_id}")
                if record.get("status") != PENDING:
                    row = waiting.pop(image_id)
                    row["status"] = record.get("status")
                    row["detail"] = record.get("error")
                    progress.advance(bar)
            if waiting:
                time.sleep(POLL_SECONDS)
    return not waiting


def upload(
    api: ApiClient,
    files: list[Path],
    prompt: str | None,
    wait: bool,
    timeout: float,
    out: Output,
) -> None:
    rows = []
    with _progress(out) as progress:
        bar = progress.add_task("uploading", total=len(files))
        for path in files:
            rows.append(send(api, path, prompt))
            progress.advance(bar)
    finished = wait_for_embedding(api, rows, timeout, out) if wait else True
    out.table("uploads", ["file", "image_id", "status", "detail"], rows)
    out.data(rows)
    bad = [r for r in rows if r["status"] in ("refused", "failed")]
    if not finished:
        left = sum(r["status"] == PENDING for r in rows)
        raise CliError(f"{left} image(s) still pending after {timeout:g} s", TIMED_OUT)
    if bad:
        raise CliError(f"{len(bad)} of {len(rows)} file(s) refused or failed", FAILED)


def similar(api: ApiClient, image: str, prompt: str, k: int, out: Output) -> list[dict[str, Any]]:
    """A local file is embedded on the fly (POST /similarity); anything else is an image id."""
    path = Path(image)
    if path.is_file():
        with out.busy(f"embedding {path.name} and ranking {prompt!r} ..."):
            body = api.json(
                "POST", "/similarity", json={"prompt": prompt, "k": k, "images": [_encoded(path)]}
            )
        query = body["queries"][0]
        results, model_id = query["results"], query["model_id"]
    else:
        body = api.json(
            "GET", "/similarity", params={"image_id": image, "prompt": prompt, "k": str(k)}
        )
        results, model_id = body["results"], body["model_id"]
    rows = [
        {"rank": rank, "image_id": r["image_id"], "similarity": f"{r['similarity']:.4f}"}
        for rank, r in enumerate(results, 1)
    ]
    out.say(f"most like {image} in {body['prompt']!r} (model {model_id}):")
    out.table("", ["rank", "image_id", "similarity"], rows)
    out.data({"prompt": body["prompt"], "model_id": model_id, "results": results})
    if not results:
        out.say(f"no other embedded image in prompt {body['prompt']!r}")
    return results


def prompts(api: ApiClient, out: Output) -> None:
    """GET /prompts: one row per prompt and model, with its newest embedded image."""
    body = api.json("GET", "/prompts")
    rows = [
        {
            "prompt": item["prompt"],
            "model_id": item["model_id"],
            "images": item["images"],
            "newest image": item["newest"]["image_id"],
            "newest at": item["newest"]["created_at"],
        }
        for item in body["prompts"]
    ]
    out.table(f"{len(rows)} prompt(s) with embedded images", list(rows[0]) if rows else [], rows)
    out.data(body)
