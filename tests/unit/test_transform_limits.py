"""Batch transform inside the serving container's limits: the fullest request a run can send
answers within the response size and timeout its model's environment sets."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pipeline.embedding.transform_config import (
    INVOCATION_TIMEOUT_SECONDS,
    MAX_PAYLOAD_MB,
    MIN_RECORD_BYTES,
    SLOWEST_IMAGES_PER_SECOND,
    records_per_request,
    server_environment,
)
from pipeline.local.sagemaker.payloads import (
    MB,
    TS_DEFAULT_MAX_BYTES,
    ServerLimits,
    TransformError,
    check_job_limits,
    pack_payloads,
)
from sagemaker_jobs.image_embed.code import inference


def _worst_output_line(dim: int) -> bytes:
    """One line as the real output_fn writes it, with the longest float reprs float32 gives."""
    vector = np.full(dim, -1.2345678e-05, dtype=np.float32)
    prediction = {
        "image_id": "f" * 32,
        "embedding": vector.tolist(),
        "model_id": "efficientnet-lite0-imagenet-int8-" + "x" * 64,
    }
    return inference.output_fn([prediction], "application/jsonlines").encode()


def _shortest_manifest_line() -> bytes:
    line = {"image_id": "f" * 32, "s3_uri": "s3://abc/" + "f" * 32 + ".bmp"}
    return json.dumps(line).encode()


def test_no_manifest_line_is_shorter_than_the_sizing_assumes():
    assert len(_shortest_manifest_line()) >= MIN_RECORD_BYTES


@pytest.mark.parametrize("dim", [512, 1280])
def test_the_fullest_request_fits_the_response_limit_the_model_environment_sets(dim):
    lines = [_shortest_manifest_line()] * (2 * records_per_request())
    payloads = list(pack_payloads(lines, "MultiRecord", MAX_PAYLOAD_MB, "Line"))
    fullest = max(p.count(b"\n") for p in payloads)
    assert fullest <= records_per_request()
    limits = ServerLimits.from_environment(server_environment(dim))
    response = fullest * len(_worst_output_line(dim))
    assert response <= limits.max_response_bytes
    # TorchServe's default would refuse it: what failed every part over a few hundred images
    assert response > TS_DEFAULT_MAX_BYTES
    assert fullest / SLOWEST_IMAGES_PER_SECOND <= limits.timeout_seconds
    assert limits.timeout_seconds <= INVOCATION_TIMEOUT_SECONDS


def test_the_server_limits_refuse_what_the_container_would():
    limits = ServerLimits()  # TorchServe's defaults
    with pytest.raises(TransformError, match="max_response_size"):
        limits.check_response(b"x" * (TS_DEFAULT_MAX_BYTES + 1), 1.0)
    with pytest.raises(TransformError, match="response timeout of 60 s"):
        limits.check_response(b"{}", 61.0)
    with pytest.raises(TransformError, match="max_request_size"):
        limits.check_request(b"x" * (7 * MB))
    limits.check_response(b"x" * TS_DEFAULT_MAX_BYTES, 59.0)


def test_create_transform_jobs_payload_limits():
    assert check_job_limits({"MaxPayloadInMB": 1, "MaxConcurrentTransforms": 4}) is None
    assert "between 0 and 100" in str(check_job_limits({"MaxPayloadInMB": 101}))
    assert "must not exceed 100 MB" in str(
        check_job_limits({"MaxPayloadInMB": 30, "MaxConcurrentTransforms": 4})
    )
