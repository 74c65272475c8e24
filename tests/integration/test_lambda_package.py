"""`make package`'s artifacts: the code zip and the dependencies layer fit Lambda's unzipped
limit, and both handlers import and answer from them, unpacked, in a fresh interpreter that
sees nothing else (`-S -E`: no site-packages, no PYTHON* variables; /var/task and /opt/python
on sys.path as on Lambda).

The layer is built for the runtime (python3.12, manylinux x86_64). Where no python3.12 is on
this machine, the same builder makes the same layer for this interpreter instead (same
requirements, same stripping) and the handlers run on that. Slow: about 100 MB of wheels
are downloaded once per session and the layer is built once (about 60 s in all)."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from pipeline import aws
from pipeline.aws_build.lambda_package import (
    LAMBDA_UNZIPPED_LIMIT,
    RUNTIME_PYTHON,
    build_code,
    build_layer,
    elf_dynamic,
    find_interpreter,
    unzipped_size,
)
from pipeline.local.api_gateway import proxy_event
from pipeline.storage.images_table import ImageStore
from tests.events import batch, s3_put_record
from tests.helpers import commit_shard, embedded_records, gradient_jpeg

# Builds the layer from about 100 MB of wheels: in `make test`, not in the middle tier.
pytestmark = pytest.mark.package

# Room left under the limit for the code to grow (10 % of 250 MiB).
MARGIN = LAMBDA_UNZIPPED_LIMIT // 10


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path | str]:
    work = tmp_path_factory.mktemp("lambda-artifacts")
    interpreter = find_interpreter(RUNTIME_PYTHON)
    version = RUNTIME_PYTHON if interpreter else f"{sys.version_info[0]}.{sys.version_info[1]}"
    interpreter = interpreter or sys.executable
    layer, _ = build_layer(work, work / "layer.zip", version, interpreter=interpreter)
    code = build_code(work, work / "imgsim.zip", interpreter)
    task, opt = work / "task", work / "opt"
    with zipfile.ZipFile(code) as archive:
        archive.extractall(task)
    with zipfile.ZipFile(layer) as archive:
        archive.extractall(opt)
    return {"code": code, "layer": layer, "task": task, "opt": opt, "python": interpreter}


def test_code_and_layer_fit_lambdas_unzipped_limit_with_margin(artifacts):
    total = unzipped_size(artifacts["code"]) + unzipped_size(artifacts["layer"])
    assert total < LAMBDA_UNZIPPED_LIMIT - MARGIN, f"{total / 1e6:.1f} MB"


def test_what_the_handlers_never_use_is_gone_and_every_arrow_library_resolves(artifacts):
    pyarrow = Path(artifacts["opt"]) / "python" / "pyarrow"
    names = {p.name for p in pyarrow.iterdir()}
    assert not [n for n in names if "flight" in n or n.startswith(("libarrow_s3", "_s3fs"))]
    assert not {"include", "tests", "src"} & names
    assert not list(Path(artifacts["opt"]).rglob("*.pyx"))
    # one copy per library, under its SONAME; everything a module links is there
    assert [n for n in names if n.startswith("libarrow_python.so")] == ["libarrow_python.so.2600"]
    for module in pyarrow.glob("*.so*"):
        wanted = {n for n in elf_dynamic(module).needed if n.startswith(("libarrow", "libparq"))}
        assert wanted <= names, (module.name, wanted - names)


SCRIPT = """
import json, sys, time
start = time.perf_counter()
sys.path[:0] = [{task!r}, {opt!r}]
kind, event = sys.argv[1], json.loads(sys.stdin.read())

class Context:
    function_name = "imgsim-" + kind
    memory_limit_in_mb = 1024
    function_version = "$LATEST"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:imgsim-" + kind
    aws_request_id = "0" * 32
    def get_remaining_time_in_millis(self):
        return 30_000

if kind == "api":
    from lambdas.api.handler import handler
else:
    from lambdas.ingest.handler import handler
imported = time.perf_counter()
built = handler.built
answer = handler(event, Context())
done = time.perf_counter()
outside = sorted({{m.__file__ for m in list(sys.modules.values())
    if getattr(m, "__file__", None) and "-packages" in m.__file__}})
print(json.dumps({{"answer": answer, "import_s": imported - start, "first_s": done - start,
    "built_in_init": built,
    "outside": outside, "boto3": __import__("boto3").__file__}}))
"""


def run_handler(artifacts, settings, kind: str, event: dict) -> dict:
    script = SCRIPT.format(task=str(artifacts["task"]), opt=str(artifacts["opt"] / "python"))
    env = {
        **settings.to_env(),
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "x",
        "AWS_LAMBDA_FUNCTION_NAME": f"imgsim-{kind}",  # as Lambda sets it, init phase included
    }
    result = subprocess.run(
        [str(artifacts["python"]), "-S", "-E", "-c", script, kind],
        input=json.dumps(event),
        env={**env, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["outside"] == [], "modules loaded from outside the artifacts"
    assert out["boto3"].startswith(str(artifacts["opt"]))
    return out


def test_the_api_handler_answers_a_lookup_from_the_artifacts_and_reports_its_cold_start(
    artifacts, stack
):
    settings = stack.settings
    rng = np.random.default_rng(0)
    vectors = {f"img{i:03d}": rng.standard_normal(16) for i in range(200)}
    commit_shard(settings, "a red fox", "clip-tiny-random-init-seed0", "run-0", vectors, {"img010"})
    # a lookup returns only images whose record says embedded
    embedded_records(settings, vectors, "a red fox")
    event = proxy_event(
        "GET", "/similarity?image_id=img010&prompt=a+red+fox&k=3", {}, b"", "127.0.0.1"
    )
    out = run_handler(artifacts, settings, "api", event)
    answer = out["answer"]
    assert answer["statusCode"] == 200, answer
    scores = [r["similarity"] for r in json.loads(answer["body"])["results"]]
    assert len(scores) == 3 and scores == sorted(scores, reverse=True)
    # In Lambda the clients and the app are built in the init phase, so a SnapStart restore
    # starts from them: what is left of a cold start then is the request after init.
    assert out["built_in_init"]
    init, first = out["import_s"], out["first_s"]
    after = first - init
    print(f"API cold start: init {init:.3f} s, first lookup {first:.3f} s ({after:.3f} after init)")
    # Target under 1 s; what the 2-core machine measures is in docs/performance.md: this only
    # guards against a regression.
    assert out["first_s"] < 10.0


def test_the_ingest_handler_records_an_upload_from_the_artifacts(artifacts, stack):
    settings = stack.settings
    data = gradient_jpeg()
    put = aws.client(settings, "s3").put_object(
        Bucket=settings.bucket, Key="uploads/fox.jpg", Body=data, Metadata={"prompt": "fox"}
    )
    event = batch(s3_put_record(settings.bucket, "uploads/fox.jpg", put["ETag"], len(data)))
    out = run_handler(artifacts, settings, "ingest", event)
    assert out["answer"] == {"batchItemFailures": []}
    assert ImageStore(settings).get("fox")["status"] == "pending"
