"""The real-time embedding endpoint (`Settings.embed_endpoint`, which POST /embed and the
similarity routes call through InvokeEndpoint), deployed with sagemaker-core's resources
(Model, EndpointConfig, Endpoint). The same code deploys on AWS (`imgsim endpoint deploy`)
and on the local stack's SageMaker emulator (`pipeline.local.embed_endpoint`).

A deployment is a transaction on deterministic names: the model and the endpoint config are
named after the endpoint and a digest of what they serve (artifact URL, image, instance type,
count, role, environment), so

- the endpoint InService on that config: nothing is created or updated;
- no endpoint: model, config, CreateEndpoint, wait InService;
- another config (a new artifact): a new model and config, then UpdateEndpoint. SageMaker keeps
  the old variant serving until the new one is InService, so lookups work during the switch;
  a failed update rolls back to the old config, which is reported as an error here.

The artifact is identified by its URL: publish a new model.tar.gz under a new key. Old models
and configs are left in place (a rollback is an UpdateEndpoint to them).

Endpoint URLs: sagemaker-core takes no endpoint URL and no ready client, only a boto3 Session
and a region (its `SageMakerClient` calls `session.client("sagemaker", region, config=...)`).
botocore's own ways to point a session elsewhere (AWS_ENDPOINT_URL_SAGEMAKER, the config file's
`services` section) are process-wide, so `sagemaker_session` hands sagemaker-core a boto3
Session whose `client()` defaults `endpoint_url` to the settings' endpoint for that service; it
shares the settings' botocore session (credentials, role, profile). With no endpoints set (AWS)
the settings' session is used as it is. Every call passes this session explicitly: sagemaker-core
makes the first client of a process its default for calls without one, which this code never
relies on.

sagemaker-core takes seconds to import and is not in the Lambda package: it is imported only
inside this module's functions.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

import boto3
from botocore.exceptions import ClientError

from pipeline.embedding.serving_image import ENDPOINT_ENVIRONMENT, workers_environment
from pipeline.settings import Settings

log = logging.getLogger(__name__)

VARIANT = "AllTraffic"
DEFAULT_INSTANCE_TYPE = "ml.m5.large"
T = TypeVar("T")


@dataclass(frozen=True)
class EndpointSpec:
    """What the endpoint serves. Without `image_uri`, the SageMaker PyTorch inference image of
    the settings' region (`serving_image_uri`)."""

    model_data_url: str
    role_arn: str
    instance_type: str = DEFAULT_INSTANCE_TYPE
    instance_count: int = 1
    image_uri: str = ""
    environment: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.model_data_url.startswith("s3://"):
            raise ValueError(f"model_data_url must be an s3:// URI, not {self.model_data_url!r}")
        if not self.role_arn.startswith("arn:"):
            raise ValueError("role_arn must be the ARN of the SageMaker execution role")

    def resource_name(self, endpoint_name: str) -> str:
        """The model's and the endpoint config's name: <= 63 characters, one per spec."""
        identity = json.dumps(
            [
                self.model_data_url,
                self.image_uri,
                self.instance_type,
                self.instance_count,
                self.role_arn,
                sorted(self.environment.items()),
            ]
        )
        digest = hashlib.sha256(identity.encode()).hexdigest()[:8]
        return f"{endpoint_name[:54].rstrip('-')}-{digest}"


@dataclass(frozen=True)
class Deployment:
    endpoint_name: str
    config_name: str  # also the model's name
    action: str  # "unchanged" | "created" | "updated"


class _EndpointSession(boto3.Session):
    """A boto3 Session whose clients default to the given endpoint URL per service."""

    def __init__(self, endpoints: Mapping[str, str], base: boto3.Session | None = None) -> None:
        # botocore_session is boto3's documented way to share a session; its only handle is
        # the private attribute, as boto3 exposes no getter.
        super().__init__(botocore_session=base._session if base else None)
        self._endpoints = dict(endpoints)

    def client(self, service_name: str, *args: Any, **kwargs: Any) -> Any:
        positional_endpoint = len(args) >= 5  # region, api_version, use_ssl, verify, endpoint
        if not positional_endpoint and kwargs.get("endpoint_url") is None:
            kwargs["endpoint_url"] = self._endpoints.get(service_name)
        return super().client(service_name, *args, **kwargs)


def sagemaker_session(settings: Settings) -> boto3.Session:
    """The boto3 session sagemaker-core's resources are given (see the module docstring)."""
    if settings.endpoint("sagemaker") or settings.endpoint("sagemaker-runtime"):
        return _EndpointSession(settings.endpoints, settings.session)
    return settings.session or boto3.session.Session()


def deploy(
    settings: Settings, spec: EndpointSpec, *, poll: int = 10, timeout: int = 3600
) -> Deployment:
    """Bring `settings.embed_endpoint` to InService on `spec` (see the module docstring)."""
    from sagemaker.core.resources import Endpoint

    from pipeline.embedding.transform_config import serving_image_uri

    if not spec.image_uri:
        spec = replace(spec, image_uri=serving_image_uri(settings.region, spec.instance_type))
    where = {"session": sagemaker_session(settings), "region": settings.region}
    name = settings.embed_endpoint
    config_name = spec.resource_name(name)

    endpoint = _get_or_none(lambda: Endpoint.get(endpoint_name=name, **where))
    if endpoint is None:
        _ensure_model_and_config(spec, config_name, where)
        log.info("creating endpoint %s on %s", name, config_name)
        endpoint = Endpoint.create(endpoint_name=name, endpoint_config_name=config_name, **where)
        action = "created"
    else:
        if endpoint.endpoint_status == "Failed":
            raise RuntimeError(
                f"endpoint {name} is Failed ({endpoint.failure_reason}); SageMaker allows only "
                "DeleteEndpoint on it: delete it, then deploy again"
            )
        if endpoint.endpoint_status != "InService":  # a creation or update in flight
            endpoint.wait_for_status("InService", poll=poll, timeout=timeout)
        if endpoint.endpoint_config_name == config_name:
            log.info("endpoint %s already serves %s", name, config_name)
            return Deployment(name, config_name, "unchanged")
        _ensure_model_and_config(spec, config_name, where)
        log.info("updating endpoint %s: %s -> %s", name, endpoint.endpoint_config_name, config_name)
        endpoint.endpoint_config_name = config_name
        endpoint.update()
        action = "updated"
    endpoint.wait_for_status("InService", poll=poll, timeout=timeout)
    if endpoint.endpoint_config_name != config_name:  # the update was rolled back
        raise RuntimeError(
            f"endpoint {name} did not switch to {config_name}: {endpoint.failure_reason}"
        )
    return Deployment(name, config_name, action)


def _ensure_model_and_config(spec: EndpointSpec, name: str, where: dict[str, Any]) -> None:
    from sagemaker.core.resources import EndpointConfig, Model
    from sagemaker.core.shapes import ContainerDefinition, ProductionVariant

    if _get_or_none(lambda: Model.get(model_name=name, **where)) is None:
        log.info("creating model %s for %s", name, spec.model_data_url)
        Model.create(
            model_name=name,
            execution_role_arn=spec.role_arn,
            primary_container=ContainerDefinition(
                image=spec.image_uri,
                model_data_url=spec.model_data_url,
                environment={
                    **workers_environment(spec.instance_type),
                    **ENDPOINT_ENVIRONMENT,
                    **spec.environment,
                },
            ),
            # the endpoint's inputs are image bodies and the artifact carries its wheels: the
            # container needs no network
            enable_network_isolation=True,
            **where,
        )
    if _get_or_none(lambda: EndpointConfig.get(endpoint_config_name=name, **where)) is None:
        EndpointConfig.create(
            endpoint_config_name=name,
            production_variants=[
                ProductionVariant(
                    variant_name=VARIANT,
                    model_name=name,
                    instance_type=spec.instance_type,
                    initial_instance_count=spec.instance_count,
                )
            ],
            **where,
        )


def _get_or_none(get: Callable[[], T]) -> T | None:
    """The resource, or None where SageMaker answers that it does not exist (Describe* says
    ValidationException 'Could not find ...')."""
    try:
        return get()
    except ClientError as err:
        error = err.response.get("Error", {})
        if error.get("Code") == "ValidationException" and "Could not find" in str(
            error.get("Message", "")
        ):
            return None
        raise
