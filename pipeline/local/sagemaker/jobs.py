"""Transform jobs: run one job's inputs through a loaded model, as batch transform does."""

from __future__ import annotations

import gzip
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pipeline.local.sagemaker.models import LoadedModel
from pipeline.local.sagemaker.payloads import (
    ServerLimits,
    TransformError,
    assemble,
    manifest_objects,
    output_key,
    pack_payloads,
    split_records,
    split_s3_uri,
)


class Stopped(Exception):
    """StopTransformJob was called."""


@dataclass
class TransformJob:
    request: dict[str, Any]
    status: str = "InProgress"
    failure_reason: str | None = None
    creation_time: float = field(default_factory=time.time)
    start_time: float | None = None
    end_time: float | None = None
    stop_requested: threading.Event = field(default_factory=threading.Event)

    @property
    def name(self) -> str:
        return self.request["TransformJobName"]

    def describe(self, arn: str) -> dict[str, Any]:
        request = self.request
        out = {
            "TransformJobName": self.name,
            "TransformJobArn": arn,
            "TransformJobStatus": self.status,
            "ModelName": request["ModelName"],
            "TransformInput": request["TransformInput"],
            "TransformOutput": request["TransformOutput"],
            "TransformResources": request["TransformResources"],
            "CreationTime": self.creation_time,
        }
        for key in (
            "BatchStrategy",
            "MaxPayloadInMB",
            "MaxConcurrentTransforms",
            "Environment",
            "DataProcessing",
            "ModelClientConfig",
        ):
            if key in request:
                out[key] = request[key]
        if self.failure_reason:
            out["FailureReason"] = self.failure_reason
        if self.start_time:
            out["TransformStartTime"] = self.start_time
        if self.end_time:
            out["TransformEndTime"] = self.end_time
        return out


def input_objects(s3: Any, data_source: dict[str, Any]) -> tuple[list[str], str]:
    """(object URIs, the prefix outputs are named relative to)."""
    source = data_source["S3DataSource"]
    uri, kind = source["S3Uri"], source.get("S3DataType", "S3Prefix")
    bucket, key = split_s3_uri(uri)
    if kind == "ManifestFile":
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        objects = manifest_objects(body)
        return objects, objects[0].rsplit("/", 1)[0] + "/" if objects else uri
    if kind != "S3Prefix":
        raise TransformError(f"S3DataType {kind} is not supported by the emulator")
    objects = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=key):
        objects += [
            f"s3://{bucket}/{o['Key']}"
            for o in page.get("Contents", [])
            if not o["Key"].endswith("/")
        ]
    if not objects:
        raise TransformError(f"no input objects under {uri}")
    return objects, uri


def run_transform(
    job: TransformJob,
    s3: Any,
    load_model: Callable[[], LoadedModel],
    limits: ServerLimits | None = None,
) -> None:
    """Run the job to Completed, Failed (with a reason) or Stopped. Every request and response
    is held to the model server's limits, as the serving container would."""
    job.start_time = time.time()
    try:
        model = load_model()
        request = job.request
        tin, tout = request["TransformInput"], request["TransformOutput"]
        objects, prefix = input_objects(s3, tin["DataSource"])
        for uri in objects:
            _transform_object(job, s3, model, uri, prefix, tin, tout, limits or ServerLimits())
        job.status = "Completed"
    except Stopped:
        job.status = "Stopped"
    except Exception as exc:  # the job fails with the reason, as SageMaker reports it
        job.status = "Failed"
        job.failure_reason = f"{type(exc).__name__}: {exc}"[:1024]
    finally:
        job.end_time = time.time()


def _transform_object(
    job: TransformJob,
    s3: Any,
    model: LoadedModel,
    uri: str,
    prefix: str,
    tin: dict[str, Any],
    tout: dict[str, Any],
    limits: ServerLimits,
) -> None:
    bucket, key = split_s3_uri(uri)
    data = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    if tin.get("CompressionType") == "Gzip":
        data = gzip.decompress(data)
    split_type = tin.get("SplitType", "None")
    records = split_records(data, split_type)
    outputs = []
    for payload in pack_payloads(
        records,
        job.request.get("BatchStrategy", "MultiRecord"),
        int(job.request.get("MaxPayloadInMB", 6)),
        split_type,
    ):
        if job.stop_requested.is_set():
            raise Stopped
        limits.check_request(payload)
        started = time.monotonic()
        output = model.invoke(
            payload,
            tin.get("ContentType", "application/jsonlines"),
            tout.get("Accept", "application/jsonlines"),
        )
        limits.check_response(output, time.monotonic() - started)
        outputs.append(output)
    out_bucket, out_key = output_key(tout["S3OutputPath"], uri, prefix)
    s3.put_object(
        Bucket=out_bucket, Key=out_key, Body=assemble(outputs, tout.get("AssembleWith", "None"))
    )
