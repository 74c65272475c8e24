"""The SageMaker emulator, driven with boto3 exactly as the Airflow provider drives SageMaker."""

from __future__ import annotations

import io
import json
import tarfile

import boto3
import pytest
from botocore.exceptions import ClientError

from pipeline import aws
from pipeline.embedding.transform_config import server_environment
from sagemaker_jobs.build_model import build
from tests.helpers import gradient_jpeg, image_bytes, transform_job_done
from tests.polling import eventually


@pytest.fixture
def sm(sagemaker_emulator):
    return boto3.client("sagemaker", endpoint_url=sagemaker_emulator, region_name="us-east-1")


@pytest.fixture
def model_uri(stack, tiny_clip_artifact):
    s3 = aws.client(stack.settings, "s3")
    s3.upload_file(str(tiny_clip_artifact), stack.settings.bucket, "models/tiny/model.tar.gz")
    return f"s3://{stack.settings.bucket}/models/tiny/model.tar.gz"


def _job_request(name, model, bucket, prefix, **extra):
    return {
        "TransformJobName": name,
        "ModelName": model,
        "TransformInput": {
            "DataSource": {
                "S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"s3://{bucket}/{prefix}"}
            },
            "ContentType": "application/jsonlines",
            "SplitType": "Line",
        },
        "TransformOutput": {
            "S3OutputPath": f"s3://{bucket}/out/{name}",
            "Accept": "application/jsonlines",
            "AssembleWith": "Line",
        },
        "TransformResources": {"InstanceType": "ml.m5.xlarge", "InstanceCount": 1},
        "BatchStrategy": "MultiRecord",
        "MaxPayloadInMB": 1,
        **extra,
    }


def test_a_transform_job_runs_the_real_handler_and_writes_dot_out(sm, stack, model_uri):
    settings = stack.settings
    s3 = aws.client(settings, "s3")
    s3.put_object(Bucket=settings.bucket, Key="uploads/a.jpg", Body=gradient_jpeg())
    s3.put_object(Bucket=settings.bucket, Key="uploads/b.png", Body=image_bytes("PNG"))
    s3.put_object(Bucket=settings.bucket, Key="uploads/bad.jpg", Body=b"not an image")
    lines = [
        {"image_id": i, "s3_uri": f"s3://{settings.bucket}/uploads/{k}"}
        for i, k in (("a", "a.jpg"), ("b", "b.png"), ("bad", "bad.jpg"))
    ]
    s3.put_object(
        Bucket=settings.bucket,
        Key="manifests/run1/input.jsonl",
        Body="".join(json.dumps(x) + "\n" for x in lines),
    )
    sm.create_model(
        ModelName="tiny-1",
        ExecutionRoleArn="arn:aws:iam::123456789012:role/x",
        PrimaryContainer={"Image": "local", "ModelDataUrl": model_uri},
    )
    assert sm.describe_model(ModelName="tiny-1")["PrimaryContainer"]["ModelDataUrl"] == model_uri

    sm.create_transform_job(**_job_request("job-1", "tiny-1", settings.bucket, "manifests/run1/"))
    job = transform_job_done(sm, "job-1")
    assert job["TransformJobStatus"] == "Completed", job.get("FailureReason")
    assert job["TransformEndTime"] >= job["TransformStartTime"]

    out = s3.get_object(Bucket=settings.bucket, Key="out/job-1/input.jsonl.out")["Body"].read()
    results = [json.loads(line) for line in out.decode().splitlines()]
    assert [r["image_id"] for r in results] == ["a", "b", "bad"]
    assert len(results[0]["embedding"]) == 32
    assert results[0]["model_id"] == "clip-tiny-random-init-seed0"
    assert "error" in results[2] and "embedding" not in results[2]

    with pytest.raises(ClientError) as dup:
        sm.create_transform_job(**_job_request("job-1", "tiny-1", settings.bucket, "manifests/"))
    assert dup.value.response["Error"]["Code"] == "ResourceInUse"
    names = [
        j["TransformJobName"]
        for j in sm.list_transform_jobs(NameContains="job-1")["TransformJobSummaries"]
    ]
    assert names == ["job-1"]


def test_unknown_resources_answer_validation_exceptions(sm):
    for call in (
        lambda: sm.describe_model(ModelName="nope"),
        lambda: sm.describe_transform_job(TransformJobName="nope"),
    ):
        with pytest.raises(ClientError) as err:
            call()
        assert err.value.response["Error"]["Code"] == "ValidationException"


def test_a_job_whose_input_is_missing_fails_with_a_reason(sm, stack, model_uri):
    sm.create_model(
        ModelName="tiny-2",
        ExecutionRoleArn="arn:aws:iam::123456789012:role/x",
        PrimaryContainer={"Image": "local", "ModelDataUrl": model_uri},
    )
    sm.create_transform_job(**_job_request("job-2", "tiny-2", stack.settings.bucket, "nothing/"))
    job = transform_job_done(sm, "job-2")
    assert job["TransformJobStatus"] == "Failed" and "no input objects" in job["FailureReason"]


def test_an_unsupported_content_type_fails_the_job(sm, stack, model_uri):
    settings = stack.settings
    aws.client(settings, "s3").put_object(Bucket=settings.bucket, Key="csv/in.csv", Body=b"a,b\n")
    sm.create_model(
        ModelName="tiny-3",
        ExecutionRoleArn="arn:aws:iam::123456789012:role/x",
        PrimaryContainer={"Image": "local", "ModelDataUrl": model_uri},
    )
    request = _job_request("job-3", "tiny-3", settings.bucket, "csv/")
    request["TransformInput"]["ContentType"] = "text/csv"
    sm.create_transform_job(**request)
    job = transform_job_done(sm, "job-3")
    assert job["TransformJobStatus"] == "Failed" and "text/csv" in job["FailureReason"]


def test_stop_transform_job(sm, stack, model_uri):
    settings = stack.settings
    s3 = aws.client(settings, "s3")
    s3.put_object(Bucket=settings.bucket, Key="uploads/a.jpg", Body=gradient_jpeg())
    line = json.dumps({"image_id": "a", "s3_uri": f"s3://{settings.bucket}/uploads/a.jpg"})
    for i in range(20):  # 20 objects: the stop lands between them
        s3.put_object(Bucket=settings.bucket, Key=f"many/{i:02d}.jsonl", Body=line + "\n")
    sm.create_model(
        ModelName="tiny-4",
        ExecutionRoleArn="arn:aws:iam::123456789012:role/x",
        PrimaryContainer={"Image": "local", "ModelDataUrl": model_uri},
    )
    sm.create_transform_job(
        **_job_request("job-4", "tiny-4", settings.bucket, "many/", BatchStrategy="SingleRecord")
    )
    sm.stop_transform_job(TransformJobName="job-4")
    job = transform_job_done(sm, "job-4")
    assert job["TransformJobStatus"] == "Stopped"
    with pytest.raises(ClientError):
        sm.stop_transform_job(TransformJobName="job-4")


def test_endpoint_invocation_embeds_one_image(sm, stack, model_uri, sagemaker_emulator):
    sm.create_model(
        ModelName="tiny-5",
        ExecutionRoleArn="arn:aws:iam::123456789012:role/x",
        PrimaryContainer={"Image": "local", "ModelDataUrl": model_uri},
    )
    sm.create_endpoint_config(
        EndpointConfigName="cfg-5",
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "ModelName": "tiny-5",
                "InstanceType": "ml.m5.xlarge",
                "InitialInstanceCount": 1,
            }
        ],
    )
    sm.create_endpoint(EndpointName="ep-5", EndpointConfigName="cfg-5")
    assert _wait_endpoint(sm, "ep-5", "Creating")["EndpointStatus"] == "InService"
    runtime = boto3.client(
        "sagemaker-runtime", endpoint_url=sagemaker_emulator, region_name="us-east-1"
    )
    response = runtime.invoke_endpoint(
        EndpointName="ep-5",
        ContentType="image/jpeg",
        Accept="application/json",
        Body=gradient_jpeg(),
    )
    result = json.loads(response["Body"].read())
    assert len(result["embedding"]) == 32 and result["model_id"].endswith("random-init-seed0")
    with pytest.raises(ClientError) as err:
        runtime.invoke_endpoint(EndpointName="ep-5", ContentType="text/plain", Body=b"hi")
    assert err.value.response["Error"]["Code"] == "ModelError"


def _endpoint_on(sm, model_uri, suffix):
    """Model, config and endpoint `ep-<suffix>` on `model_uri`, InService."""
    _model_and_config(sm, model_uri, suffix)
    sm.create_endpoint(EndpointName=f"ep-{suffix}", EndpointConfigName=f"cfg-{suffix}")
    return _wait_endpoint(sm, f"ep-{suffix}", "Creating")


def _model_and_config(sm, model_uri, suffix):
    sm.create_model(
        ModelName=f"m-{suffix}",
        ExecutionRoleArn="arn:aws:iam::123456789012:role/x",
        PrimaryContainer={"Image": "local", "ModelDataUrl": model_uri},
    )
    sm.create_endpoint_config(
        EndpointConfigName=f"cfg-{suffix}",
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "ModelName": f"m-{suffix}",
                "InstanceType": "ml.m5.large",
                "InitialInstanceCount": 1,
            }
        ],
    )


def _wait_endpoint(sm, name, while_status, timeout=60):
    """The endpoint's description once its status is no longer `while_status`."""

    def moved_on():
        endpoint = sm.describe_endpoint(EndpointName=name)
        return None if endpoint["EndpointStatus"] == while_status else endpoint

    return eventually(moved_on, timeout, 0.1, f"endpoint {name} past {while_status}")


def _model_id(runtime, endpoint):
    body = runtime.invoke_endpoint(
        EndpointName=endpoint, ContentType="image/jpeg", Body=gradient_jpeg()
    )["Body"].read()
    return json.loads(body)["model_id"]


@pytest.fixture
def color_layout_uri(stack, tmp_path):
    build(tmp_path / "color.tar.gz", family="color-layout-v1")
    s3 = aws.client(stack.settings, "s3")
    s3.upload_file(str(tmp_path / "color.tar.gz"), stack.settings.bucket, "models/color.tar.gz")
    return f"s3://{stack.settings.bucket}/models/color.tar.gz"


def test_update_endpoint_switches_models_and_serves_during_the_switch(
    sm, model_uri, color_layout_uri, sagemaker_emulator
):
    runtime = boto3.client(
        "sagemaker-runtime", endpoint_url=sagemaker_emulator, region_name="us-east-1"
    )
    assert _endpoint_on(sm, model_uri, "u1")["EndpointStatus"] == "InService"
    _model_and_config(sm, color_layout_uri, "u2")
    sm.update_endpoint(EndpointName="ep-u1", EndpointConfigName="cfg-u2")
    seen = set()

    def switched():
        endpoint = sm.describe_endpoint(EndpointName="ep-u1")
        if endpoint["EndpointStatus"] == "InService":
            return endpoint
        assert endpoint["EndpointStatus"] == "Updating"
        assert endpoint["PendingDeploymentSummary"]["EndpointConfigName"] == "cfg-u2"
        seen.add(_model_id(runtime, "ep-u1"))  # the old model answers until the switch
        return None

    endpoint = eventually(switched, 60, 0.01, "ep-u1 switched to cfg-u2")
    assert seen <= {"clip-tiny-random-init-seed0", "color-layout-v1"}
    assert endpoint["EndpointConfigName"] == "cfg-u2"
    assert "PendingDeploymentSummary" not in endpoint and "FailureReason" not in endpoint
    assert _model_id(runtime, "ep-u1") == "color-layout-v1"


def test_a_failed_update_rolls_back_to_the_old_config(sm, stack, model_uri, sagemaker_emulator):
    _endpoint_on(sm, model_uri, "r1")
    _model_and_config(sm, f"s3://{stack.settings.bucket}/models/missing.tar.gz", "r2")
    sm.update_endpoint(EndpointName="ep-r1", EndpointConfigName="cfg-r2")
    endpoint = _wait_endpoint(sm, "ep-r1", "Updating")
    assert endpoint["EndpointStatus"] == "InService" and endpoint["EndpointConfigName"] == "cfg-r1"
    assert endpoint["FailureReason"]
    runtime = boto3.client(
        "sagemaker-runtime", endpoint_url=sagemaker_emulator, region_name="us-east-1"
    )
    assert _model_id(runtime, "ep-r1") == "clip-tiny-random-init-seed0"


def test_endpoint_configs_are_unique_and_can_be_deleted(sm, model_uri):
    _model_and_config(sm, model_uri, "c1")
    described = sm.describe_endpoint_config(EndpointConfigName="cfg-c1")
    assert described["ProductionVariants"][0]["ModelName"] == "m-c1"
    with pytest.raises(ClientError) as dup:
        sm.create_endpoint_config(
            EndpointConfigName="cfg-c1", ProductionVariants=described["ProductionVariants"]
        )
    assert "already existing" in dup.value.response["Error"]["Message"]
    sm.delete_endpoint_config(EndpointConfigName="cfg-c1")
    with pytest.raises(ClientError) as gone:
        sm.describe_endpoint_config(EndpointConfigName="cfg-c1")
    assert gone.value.response["Error"]["Code"] == "ValidationException"
    with pytest.raises(ClientError) as missing:
        sm.update_endpoint(EndpointName="nope", EndpointConfigName="nope")
    assert missing.value.response["Error"]["Code"] == "ValidationException"


def _three_image_manifest(settings, prefix):
    s3 = aws.client(settings, "s3")
    lines = []
    for i in range(3):
        s3.put_object(Bucket=settings.bucket, Key=f"{prefix}img/{i}.jpg", Body=gradient_jpeg())
        lines.append({"image_id": f"i{i}", "s3_uri": f"s3://{settings.bucket}/{prefix}img/{i}.jpg"})
    s3.put_object(
        Bucket=settings.bucket,
        Key=f"{prefix}manifest/input.jsonl",
        Body="".join(json.dumps(x) + "\n" for x in lines),
    )
    return f"{prefix}manifest/"


@pytest.mark.parametrize(
    ("environment", "reason"),
    [
        ({"TS_MAX_RESPONSE_SIZE": "1000"}, "exceeds the model server's max_response_size"),
        ({"SAGEMAKER_MODEL_SERVER_TIMEOUT": "0.0001"}, "over its response timeout"),
    ],
)
def test_a_response_over_the_model_servers_limits_fails_the_job(
    sm, stack, model_uri, environment, reason
):
    """The emulator holds each response to the limits the serving container would: a part
    whose answer is too big or too slow fails the job with the reason."""
    name = f"limits-{len(reason)}"
    manifest = _three_image_manifest(stack.settings, f"{name}/")
    sm.create_model(
        ModelName=name,
        ExecutionRoleArn="arn:aws:iam::123456789012:role/x",
        PrimaryContainer={"Image": "local", "ModelDataUrl": model_uri, "Environment": environment},
    )
    sm.create_transform_job(**_job_request(name, name, stack.settings.bucket, manifest))
    job = transform_job_done(sm, name)
    assert job["TransformJobStatus"] == "Failed" and reason in job["FailureReason"]


def test_the_model_environment_transform_config_sets_lets_a_full_part_through(sm, stack, model_uri):
    manifest = _three_image_manifest(stack.settings, "sized/")
    sm.create_model(
        ModelName="sized",
        ExecutionRoleArn="arn:aws:iam::123456789012:role/x",
        PrimaryContainer={
            "Image": "local",
            "ModelDataUrl": model_uri,
            "Environment": server_environment(),
        },
    )
    sm.create_transform_job(**_job_request("sized", "sized", stack.settings.bucket, manifest))
    job = transform_job_done(sm, "sized")
    assert job["TransformJobStatus"] == "Completed", job.get("FailureReason")


def test_payload_limits_are_validated_when_the_job_is_created(sm, stack, model_uri):
    sm.create_model(
        ModelName="payload",
        ExecutionRoleArn="arn:aws:iam::123456789012:role/x",
        PrimaryContainer={"Image": "local", "ModelDataUrl": model_uri},
    )
    request = _job_request(
        "payload", "payload", stack.settings.bucket, "x/", MaxConcurrentTransforms=4
    )
    request["MaxPayloadInMB"] = 30
    with pytest.raises(ClientError) as refused:
        sm.create_transform_job(**request)
    assert refused.value.response["Error"]["Code"] == "ValidationException"
    assert "must not exceed 100 MB" in refused.value.response["Error"]["Message"]


SERVING_IMAGE_URI = "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-inference:2.6-cpu-py312"


def _isolated_model(sm, name, model_uri):
    sm.create_model(
        ModelName=name,
        ExecutionRoleArn="arn:aws:iam::123456789012:role/x",
        PrimaryContainer={"Image": SERVING_IMAGE_URI, "ModelDataUrl": model_uri},
        EnableNetworkIsolation=True,
    )


def test_an_isolated_endpoint_serves_an_artifact_that_carries_its_wheels(
    sm, color_layout_uri, sagemaker_emulator
):
    _isolated_model(sm, "m-iso1", color_layout_uri)
    assert sm.describe_model(ModelName="m-iso1")["EnableNetworkIsolation"] is True
    sm.create_endpoint_config(
        EndpointConfigName="cfg-iso1",
        ProductionVariants=[
            {"VariantName": "AllTraffic", "ModelName": "m-iso1", "InstanceType": "ml.m5.large"}
        ],
    )
    sm.create_endpoint(EndpointName="ep-iso1", EndpointConfigName="cfg-iso1")
    endpoint = _wait_endpoint(sm, "ep-iso1", "Creating")
    assert endpoint["EndpointStatus"] == "InService", endpoint.get("FailureReason")
    runtime = boto3.client(
        "sagemaker-runtime", endpoint_url=sagemaker_emulator, region_name="us-east-1"
    )
    assert _model_id(runtime, "ep-iso1") == "color-layout-v1"


def _needing_an_index(artifact, out):
    """The artifact with the requirements.txt of old: ranges and no wheels beside them."""
    with tarfile.open(artifact) as src, tarfile.open(out, "w:gz") as dst:
        for member in src.getmembers():
            if member.name == "code/requirements.txt" or member.name.startswith("code/wheels/"):
                continue
            dst.addfile(member, src.extractfile(member) if member.isfile() else None)
        requirements = b"pillow>=13,<14\nnumpy>=2\n"
        info = tarfile.TarInfo("code/requirements.txt")
        info.size = len(requirements)
        dst.addfile(info, io.BytesIO(requirements))
    return out


def test_an_isolated_model_whose_requirements_need_an_index_fails_its_job_with_the_reason(
    sm, stack, tmp_path
):
    settings = stack.settings
    s3 = aws.client(settings, "s3")
    build(tmp_path / "color.tar.gz", family="color-layout-v1")
    artifact = _needing_an_index(tmp_path / "color.tar.gz", tmp_path / "index.tar.gz")
    s3.upload_file(str(artifact), settings.bucket, "models/index/model.tar.gz")
    model_uri = f"s3://{settings.bucket}/models/index/model.tar.gz"
    s3.put_object(Bucket=settings.bucket, Key="uploads/iso.jpg", Body=gradient_jpeg())
    line = {"image_id": "iso", "s3_uri": f"s3://{settings.bucket}/uploads/iso.jpg"}
    s3.put_object(Bucket=settings.bucket, Key="manifests/iso/in.jsonl", Body=json.dumps(line))

    _isolated_model(sm, "m-iso2", model_uri)
    sm.create_transform_job(**_job_request("job-iso2", "m-iso2", settings.bucket, "manifests/iso/"))
    job = transform_job_done(sm, "job-iso2")
    assert job["TransformJobStatus"] == "Failed"
    reason = job["FailureReason"]
    assert "EnableNetworkIsolation" in reason and "no package index" in reason
    assert "pillow" in reason  # pip's own words: no version found without an index

    # without isolation the container installs from the index: the same artifact runs
    sm.create_model(
        ModelName="m-iso3",
        ExecutionRoleArn="arn:aws:iam::123456789012:role/x",
        PrimaryContainer={"Image": SERVING_IMAGE_URI, "ModelDataUrl": model_uri},
    )
    sm.create_transform_job(**_job_request("job-iso3", "m-iso3", settings.bucket, "manifests/iso/"))
    job = transform_job_done(sm, "job-iso3")
    assert job["TransformJobStatus"] == "Completed", job.get("FailureReason")
