"""`python -m pipeline.local deploy`, which the compose file's containers run: it deploys onto a
moto server it is pointed at, and refuses to run without a local endpoint. (`imgsim up|down`
itself is tested end to end in tests/e2e/test_up_down.py.)"""

from __future__ import annotations

import os
import subprocess
import sys

import boto3


def _deploy(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`python -m pipeline.local deploy` as a compose container runs it."""
    argv = [sys.executable, "-m", "pipeline.local", "deploy"]
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)


def test_deploy_targets_an_existing_moto_server(moto_server, tmp_path):
    env = {
        **os.environ,
        "AWS_ENDPOINT_URL": moto_server.url,
        "IMGSIM_BUCKET": "compose-style",
        "IMGSIM_LOCAL_DIR": str(tmp_path),
    }
    result = _deploy(env)
    assert result.returncode == 0, result.stderr
    s3 = boto3.client("s3", endpoint_url=moto_server.url, region_name="us-east-1")
    assert s3.get_bucket_notification_configuration(Bucket="compose-style")["QueueConfigurations"]


def test_deploy_refuses_to_run_without_a_local_endpoint(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_ENDPOINT_URL")}
    result = _deploy(env)
    assert result.returncode != 0 and "AWS_ENDPOINT_URL" in result.stderr
