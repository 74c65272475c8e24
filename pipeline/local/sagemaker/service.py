"""The emulator's state and operations: models, transform jobs, endpoint configs, endpoints
(created, and updated blue/green). Errors are raised as AwsError with the code and message
SageMaker itself uses."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from pipeline.local.loopback import AwsError
from pipeline.local.sagemaker.jobs import TransformJob, run_transform
from pipeline.local.sagemaker.models import LoadedModel, ModelCache
from pipeline.local.sagemaker.payloads import ServerLimits, check_job_limits

ACCOUNT = "123456789012"


class SageMakerService:
    def __init__(
        self, s3: Any, work_dir: Path, region: str = "us-east-1", concurrent_jobs: int = 1
    ) -> None:
        self._s3 = s3
        self._region = region
        self._cache = ModelCache(s3, work_dir)
        self._lock = threading.Lock()
        self._slots = threading.Semaphore(concurrent_jobs)
        self.models: dict[str, dict[str, Any]] = {}
        self.jobs: dict[str, TransformJob] = {}
        self.endpoint_configs: dict[str, dict[str, Any]] = {}
        self.endpoints: dict[str, dict[str, Any]] = {}

    def arn(self, kind: str, name: str) -> str:
        return f"arn:aws:sagemaker:{self._region}:{ACCOUNT}:{kind}/{name.lower()}"

    # ---------------------------------------------------------------- models
    def CreateModel(self, req: dict[str, Any]) -> dict[str, Any]:
        name = req["ModelName"]
        container = req.get("PrimaryContainer") or (req.get("Containers") or [None])[0]
        if not container or not container.get("ModelDataUrl"):
            raise AwsError("ValidationException", "PrimaryContainer.ModelDataUrl is required")
        with self._lock:
            if name in self.models:
                arn = self.arn("model", name)
                raise AwsError(
                    "ValidationException", f'Cannot create already existing model "{arn}".'
                )
            self.models[name] = {
                **req,
                "PrimaryContainer": container,
                "ModelArn": self.arn("model", name),
                "CreationTime": time.time(),
            }
        return {"ModelArn": self.arn("model", name)}

    def DescribeModel(self, req: dict[str, Any]) -> dict[str, Any]:
        model = self._model(req["ModelName"])
        return {
            k: model[k]
            for k in (
                "ModelName",
                "PrimaryContainer",
                "ModelArn",
                "CreationTime",
                "ExecutionRoleArn",
                "EnableNetworkIsolation",
            )
            if k in model
        }

    def DeleteModel(self, req: dict[str, Any]) -> dict[str, Any]:
        self._model(req["ModelName"])
        with self._lock:
            del self.models[req["ModelName"]]
        return {}

    def _model(self, name: str) -> dict[str, Any]:
        if name not in self.models:
            arn = self.arn("model", name)
            raise AwsError("ValidationException", f'Could not find model "{arn}".')
        return self.models[name]

    def _load(self, model_name: str) -> LoadedModel:
        model = self._model(model_name)
        container = model["PrimaryContainer"]
        return self._cache.load(
            container["ModelDataUrl"],
            isolated=bool(model.get("EnableNetworkIsolation")),
            image_uri=container.get("Image", ""),
        )

    # ---------------------------------------------------------------- transform jobs
    def CreateTransformJob(self, req: dict[str, Any]) -> dict[str, Any]:
        name = req["TransformJobName"]
        for field in ("ModelName", "TransformInput", "TransformOutput", "TransformResources"):
            if field not in req:
                raise AwsError("ValidationException", f"{field} is required")
        self._model(req["ModelName"])
        refused = check_job_limits(req)
        if refused:
            raise AwsError("ValidationException", refused)
        with self._lock:
            if name in self.jobs:
                raise AwsError(
                    "ResourceInUse",
                    "Job name must be unique within an AWS account "
                    f"and region, and a job with this name already exists ({name})",
                )
            job = self.jobs[name] = TransformJob(request=req)
        threading.Thread(
            target=self._run, args=(job,), name=f"transform-{name}", daemon=True
        ).start()
        return {"TransformJobArn": self.arn("transform-job", name)}

    def _run(self, job: TransformJob) -> None:
        with self._slots:
            if job.stop_requested.is_set():
                job.status, job.end_time = "Stopped", time.time()
                return
            model = self._model(job.request["ModelName"])
            # the job's Environment is set in the container on top of the model's
            env = {
                **(model["PrimaryContainer"].get("Environment") or {}),
                **(job.request.get("Environment") or {}),
            }
            run_transform(
                job,
                self._s3,
                lambda: self._load(job.request["ModelName"]),
                ServerLimits.from_environment(env),
            )

    def DescribeTransformJob(self, req: dict[str, Any]) -> dict[str, Any]:
        job = self._job(req["TransformJobName"])
        return job.describe(self.arn("transform-job", job.name))

    def StopTransformJob(self, req: dict[str, Any]) -> dict[str, Any]:
        job = self._job(req["TransformJobName"])
        if job.status not in ("InProgress", "Stopping"):
            raise AwsError(
                "ValidationException",
                f"Transform job {job.name} is {job.status} and cannot be stopped",
            )
        job.stop_requested.set()
        job.status = "Stopping"
        return {}

    def ListTransformJobs(self, req: dict[str, Any]) -> dict[str, Any]:
        jobs = [
            j
            for j in self.jobs.values()
            if req.get("NameContains", "") in j.name
            and req.get("StatusEquals", j.status) == j.status
        ]
        key = {"Name": lambda j: j.name, "Status": lambda j: j.status}.get(
            req.get("SortBy", "CreationTime"), lambda j: j.creation_time
        )
        jobs.sort(key=key, reverse=req.get("SortOrder", "Descending") == "Descending")
        start = int(req.get("NextToken") or 0)
        limit = int(req.get("MaxResults", 10))
        page = jobs[start : start + limit]
        summaries = []
        for job in page:
            summary = {
                "TransformJobName": job.name,
                "TransformJobStatus": job.status,
                "TransformJobArn": self.arn("transform-job", job.name),
                "CreationTime": job.creation_time,
                "LastModifiedTime": job.end_time or job.start_time or job.creation_time,
            }
            if job.end_time:
                summary["TransformEndTime"] = job.end_time
            if job.failure_reason:
                summary["FailureReason"] = job.failure_reason
            summaries.append(summary)
        out: dict[str, Any] = {"TransformJobSummaries": summaries}
        if start + limit < len(jobs):
            out["NextToken"] = str(start + limit)
        return out

    def _job(self, name: str) -> TransformJob:
        if name not in self.jobs:
            raise AwsError("ValidationException", f"Could not find requested job with name {name}")
        return self.jobs[name]

    # ---------------------------------------------------------------- endpoints
    def CreateEndpointConfig(self, req: dict[str, Any]) -> dict[str, Any]:
        name = req["EndpointConfigName"]
        variants = req.get("ProductionVariants") or []
        if not variants:
            raise AwsError("ValidationException", "ProductionVariants is required")
        for variant in variants:
            self._model(variant["ModelName"])
        arn = self.arn("endpoint-config", name)
        with self._lock:
            if name in self.endpoint_configs:
                raise AwsError(
                    "ValidationException",
                    f'Cannot create already existing endpoint configuration "{arn}".',
                )
            self.endpoint_configs[name] = {
                **req,
                "EndpointConfigArn": arn,
                "CreationTime": time.time(),
            }
        return {"EndpointConfigArn": arn}

    def DescribeEndpointConfig(self, req: dict[str, Any]) -> dict[str, Any]:
        config = self._endpoint_config(req["EndpointConfigName"])
        return {k: v for k, v in config.items() if k != "Tags"}

    def DeleteEndpointConfig(self, req: dict[str, Any]) -> dict[str, Any]:
        self._endpoint_config(req["EndpointConfigName"])
        with self._lock:
            del self.endpoint_configs[req["EndpointConfigName"]]
        return {}

    def _endpoint_config(self, name: str) -> dict[str, Any]:
        if name not in self.endpoint_configs:
            raise AwsError(
                "ValidationException", f'Could not find endpoint configuration "{name}".'
            )
        return self.endpoint_configs[name]

    def CreateEndpoint(self, req: dict[str, Any]) -> dict[str, Any]:
        name, config_name = req["EndpointName"], req["EndpointConfigName"]
        config = self._endpoint_config(config_name)
        arn = self.arn("endpoint", name)
        endpoint = {
            "EndpointName": name,
            "EndpointArn": arn,
            "EndpointConfigName": config_name,
            "EndpointStatus": "Creating",
            "CreationTime": time.time(),
            "LastModifiedTime": time.time(),
            "model": None,
        }
        with self._lock:
            if name in self.endpoints:
                raise AwsError(
                    "ValidationException", f'Cannot create already existing endpoint "{arn}".'
                )
            self.endpoints[name] = endpoint
        model_name = config["ProductionVariants"][0]["ModelName"]
        threading.Thread(target=self._bring_up, args=(endpoint, model_name), daemon=True).start()
        return {"EndpointArn": arn}

    def _bring_up(self, endpoint: dict[str, Any], model_name: str) -> None:
        try:
            endpoint["model"] = self._load(model_name)
            endpoint["EndpointStatus"] = "InService"
        except Exception as exc:
            endpoint["EndpointStatus"] = "Failed"
            endpoint["FailureReason"] = f"{type(exc).__name__}: {exc}"
        endpoint["LastModifiedTime"] = time.time()

    def UpdateEndpoint(self, req: dict[str, Any]) -> dict[str, Any]:
        """Blue/green, as SageMaker does by default: the old model serves (status Updating)
        until the new one is loaded; a new model that fails to load rolls the endpoint back to
        its old config, InService, with a FailureReason."""
        name, config_name = req["EndpointName"], req["EndpointConfigName"]
        config = self._endpoint_config(config_name)
        with self._lock:
            endpoint = self._endpoint(name)
            if endpoint["EndpointStatus"] != "InService":
                raise AwsError(
                    "ValidationException",
                    f'Cannot update in-progress endpoint "{endpoint["EndpointArn"]}".',
                )
            endpoint["EndpointStatus"] = "Updating"
            endpoint["LastModifiedTime"] = time.time()
            endpoint["PendingDeploymentSummary"] = {
                "EndpointConfigName": config_name,
                "StartTime": time.time(),
            }
        model_name = config["ProductionVariants"][0]["ModelName"]
        threading.Thread(
            target=self._switch, args=(endpoint, config_name, model_name), daemon=True
        ).start()
        return {"EndpointArn": endpoint["EndpointArn"]}

    def _switch(self, endpoint: dict[str, Any], config_name: str, model_name: str) -> None:
        try:
            model = self._load(model_name)
        except Exception as exc:
            endpoint["FailureReason"] = f"{type(exc).__name__}: {exc}"
        else:
            endpoint.pop("FailureReason", None)
            endpoint["model"], endpoint["EndpointConfigName"] = model, config_name
        endpoint.pop("PendingDeploymentSummary", None)
        endpoint["EndpointStatus"] = "InService"
        endpoint["LastModifiedTime"] = time.time()

    def DescribeEndpoint(self, req: dict[str, Any]) -> dict[str, Any]:
        endpoint = self._endpoint(req["EndpointName"])
        return {k: v for k, v in endpoint.items() if k != "model"}

    def DeleteEndpoint(self, req: dict[str, Any]) -> dict[str, Any]:
        self._endpoint(req["EndpointName"])
        with self._lock:
            del self.endpoints[req["EndpointName"]]
        return {}

    def _endpoint(self, name: str) -> dict[str, Any]:
        if name not in self.endpoints:
            arn = self.arn("endpoint", name)
            raise AwsError("ValidationException", f'Could not find endpoint "{arn}".')
        return self.endpoints[name]

    def invoke_endpoint(self, name: str, body: bytes, content_type: str, accept: str) -> bytes:
        endpoint = self._endpoint(name)
        # an endpoint being updated keeps serving its old model until the new one is up
        serving = endpoint["EndpointStatus"] in ("InService", "Updating")
        if not serving or endpoint["model"] is None:
            raise AwsError(
                "ValidationError", f"Endpoint {name} is {endpoint['EndpointStatus']}, not InService"
            )
        try:
            return endpoint["model"].invoke(body, content_type, accept)
        except Exception as exc:
            raise AwsError(
                "ModelError",
                f"Received client error (400) from primary with message "
                f'"{type(exc).__name__}: {exc}"',
                status=424,
            ) from exc
