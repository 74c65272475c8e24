"""One settings object, read from the environment once at the edge and passed down."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import boto3

# Service name -> the environment variable that points it elsewhere. These are boto3's
# own service-specific endpoint variables, so the AWS CLI honours the same settings.
ENDPOINT_VARIABLES: dict[str, str] = {
    "s3": "AWS_ENDPOINT_URL_S3",
    "dynamodb": "AWS_ENDPOINT_URL_DYNAMODB",
    "sqs": "AWS_ENDPOINT_URL_SQS",
    "cloudformation": "AWS_ENDPOINT_URL_CLOUDFORMATION",
    "bedrock": "AWS_ENDPOINT_URL_BEDROCK",  # GetFoundationModel: the models' lifecycle
    "bedrock-runtime": "AWS_ENDPOINT_URL_BEDROCK_RUNTIME",
    "sagemaker": "AWS_ENDPOINT_URL_SAGEMAKER",
    "sagemaker-runtime": "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME",
    "service-quotas": "AWS_ENDPOINT_URL_SERVICE_QUOTAS",  # `imgsim preflight`
    "mwaa": "AWS_ENDPOINT_URL_MWAA",  # InvokeRestApi: `imgsim campaign run` on MWAA
    "rds-data": "AWS_ENDPOINT_URL_RDS_DATA",  # the vector index's PostgreSQL, by the Data API
}
# Bedrock's clients are made in `Settings.bedrock_region`, every other one in `region`.
BEDROCK_SERVICES = ("bedrock", "bedrock-runtime")

MB = 1024 * 1024
# Lambda refuses a synchronous invocation whose request payload (for the API: the whole
# API Gateway proxy event, JSON) is not smaller than this (RequestEntityTooLargeException).
LAMBDA_SYNC_PAYLOAD_BYTES = 6 * MB


@dataclass(frozen=True)
class Limits:
    """Input rules of the API and of bucket drops (docs/api.md, Input rules and limits)."""

    # A request body the API reads. The proxy event wraps it (its headers twice, the request
    # context, the body as a JSON string), and Lambda's quota counts the event: this leaves
    # room for API Gateway's largest headers (10 KiB, counted twice) and the request context.
    max_body_bytes: int = 6_000_000
    # One decoded image in a body or behind a URL: its base64 (4 bytes for 3) and a prompt
    # still fit in `max_body_bytes`.
    max_image_bytes: int = 4_400_000
    max_object_bytes: int = 32 * MB
    max_side: int = 4096
    max_pixels: int = 4096 * 4096
    max_prompt_chars: int = 1000


@dataclass(frozen=True)
class Settings:
    """Where everything lives. No endpoint for a service means real AWS."""

    region: str = "us-east-1"
    bucket: str = "imgsim-local"
    images_table: str = "Images"
    embeddings_table: str = "Embeddings"
    shard_manifests_table: str = "ShardManifests"
    idempotency_table: str = "Idempotency"  # the API's replay records (Idempotency-Key)
    ingest_queue: str = "imgsim-ingest"
    embed_queue: str = "imgsim-embed"
    upload_prefix: str = "uploads/"
    generated_prefix: str = "generated/"
    presign_expiry_seconds: int = 900
    api_keys: tuple[str, ...] = ()  # when set, the API wants one of them in x-api-key
    embed_endpoint: str = "imgsim-embed"  # SageMaker endpoint for single-image embedding
    # The batch transform's serving images for CPU and GPU instance types, written by
    # `make mwaa` (MWAA's workers cannot look them up); empty: sagemaker-core looks them up.
    serving_image_cpu: str = ""
    serving_image_gpu: str = ""
    image_model_id: str = "stability.stable-image-core-v1:1"  # GET /images?prompt= (Active)
    # Bedrock's own region: a model is served in some regions only (the default model in
    # us-west-2 alone, with no cross-region inference profile), wherever the stack runs.
    bedrock_region: str = "us-west-2"
    image_size: int = 512
    allow_https_urls: bool = False  # `url` inputs: s3:// of the bucket always, https:// if set
    near_duplicate_threshold: float = 0.95  # cosine from an earlier image of the prompt
    # The vector index (PostgreSQL + pgvector through the RDS Data API; docs/design.md): a
    # (prompt, model) of at least `vector_index_threshold` live rows is ranked by its HNSW
    # index once built. "off", or no cluster configured: every lookup is the exact scan.
    vector_index: str = "auto"
    vector_index_threshold: int = 100_000
    # `exact=true` on a prompt with an index scans it in the function's memory: refused past
    # this many live rows (1280-d float32 vectors of 200k images are 1 GB).
    exact_scan_max_rows: int = 200_000
    vector_index_ef_search: int = 400  # HNSW's candidate list per search (recall vs time)
    # maintenance_work_mem of the index builds: a graph larger than this is built much slower
    # (a million 512-d vectors at the chosen m need more: docs/performance.md, 1M x 512)
    vector_index_build_memory: str = "2GB"
    # the HNSW graph of a new build: denser (larger m, ef_construction) reaches a higher recall
    # on hard data at a longer build and a larger index (docs/performance.md, Vector index)
    vector_index_m: int = 16
    vector_index_ef_construction: int = 128
    vector_db_cluster_arn: str = ""
    vector_db_secret_arn: str = ""
    vector_db_name: str = "imgsim"
    endpoints: Mapping[str, str] = field(default_factory=dict)
    limits: Limits = field(default_factory=Limits)
    # The boto3 session clients are made from (credentials, role, profile); None means
    # boto3's default chain. Not environment: Airflow tasks fill it from their connection.
    session: boto3.Session | None = field(default=None, compare=False, repr=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        general = env.get("AWS_ENDPOINT_URL", "")
        endpoints = {
            service: env.get(var) or general
            for service, var in ENDPOINT_VARIABLES.items()
            if env.get(var) or general
        }
        region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or cls.region
        values = _read(cls, SETTINGS_VARIABLES, env)
        return cls(
            region=region,
            endpoints=endpoints,
            limits=Limits(**_read(Limits, LIMITS_VARIABLES, env)),
            **values,
        )

    @property
    def vector_index_enabled(self) -> bool:
        """Whether lookups and the sync use the vector index at all."""
        return self.vector_index.lower() != "off" and bool(self.vector_db_cluster_arn)

    def endpoint(self, service: str) -> str | None:
        return self.endpoints.get(service)

    def region_of(self, service: str) -> str:
        """Where a client of `service` is made: Bedrock's region for Bedrock, else `region`."""
        return self.bedrock_region if service in BEDROCK_SERVICES else self.region

    def with_endpoint(
        self,
        url: str,
        services: tuple[str, ...] = ("s3", "dynamodb", "sqs", "cloudformation", "service-quotas"),
    ) -> Settings:
        """The same settings with the given services pointed at one local endpoint (moto's
        by default)."""
        return replace(self, endpoints={**self.endpoints, **{s: url for s in services}})

    def to_env(self) -> dict[str, str]:
        """The environment that makes `from_env` (and the AWS CLI) see these settings."""
        env = {"AWS_REGION": self.region, "AWS_DEFAULT_REGION": self.region}
        env.update(_write(self, SETTINGS_VARIABLES))
        env.update(_write(self.limits, LIMITS_VARIABLES))
        env.update({ENDPOINT_VARIABLES[s]: url for s, url in self.endpoints.items()})
        return env


# field -> environment variable: the one table both directions of the round trip read.
SETTINGS_VARIABLES: dict[str, str] = {
    "bucket": "IMGSIM_BUCKET",
    "images_table": "IMGSIM_IMAGES_TABLE",
    "embeddings_table": "IMGSIM_EMBEDDINGS_TABLE",
    "shard_manifests_table": "IMGSIM_SHARD_MANIFESTS_TABLE",
    "idempotency_table": "IMGSIM_IDEMPOTENCY_TABLE",
    "ingest_queue": "IMGSIM_INGEST_QUEUE",
    "embed_queue": "IMGSIM_EMBED_QUEUE",
    "upload_prefix": "IMGSIM_UPLOAD_PREFIX",
    "generated_prefix": "IMGSIM_GENERATED_PREFIX",
    "presign_expiry_seconds": "IMGSIM_PRESIGN_EXPIRY_SECONDS",
    "api_keys": "IMGSIM_API_KEYS",
    "embed_endpoint": "IMGSIM_EMBED_ENDPOINT",
    "serving_image_cpu": "IMGSIM_SERVING_IMAGE_CPU",
    "serving_image_gpu": "IMGSIM_SERVING_IMAGE_GPU",
    "image_model_id": "IMGSIM_IMAGE_MODEL_ID",
    "bedrock_region": "IMGSIM_BEDROCK_REGION",
    "image_size": "IMGSIM_IMAGE_SIZE",
    "allow_https_urls": "IMGSIM_ALLOW_HTTPS_URLS",
    "near_duplicate_threshold": "IMGSIM_NEAR_DUPLICATE_THRESHOLD",
    "vector_index": "IMGSIM_VECTOR_INDEX",
    "vector_index_threshold": "IMGSIM_VECTOR_INDEX_THRESHOLD",
    "exact_scan_max_rows": "IMGSIM_EXACT_SCAN_MAX_ROWS",
    "vector_index_ef_search": "IMGSIM_VECTOR_INDEX_EF_SEARCH",
    "vector_index_build_memory": "IMGSIM_VECTOR_INDEX_BUILD_MEMORY",
    "vector_index_m": "IMGSIM_VECTOR_INDEX_M",
    "vector_index_ef_construction": "IMGSIM_VECTOR_INDEX_EF_CONSTRUCTION",
    "vector_db_cluster_arn": "IMGSIM_VECTOR_DB_CLUSTER_ARN",
    "vector_db_secret_arn": "IMGSIM_VECTOR_DB_SECRET_ARN",
    "vector_db_name": "IMGSIM_VECTOR_DB_NAME",
}
LIMITS_VARIABLES: dict[str, str] = {
    "max_body_bytes": "IMGSIM_MAX_BODY_BYTES",
    "max_image_bytes": "IMGSIM_MAX_IMAGE_BYTES",
    "max_object_bytes": "IMGSIM_MAX_OBJECT_BYTES",
    "max_side": "IMGSIM_MAX_SIDE",
    "max_pixels": "IMGSIM_MAX_PIXELS",
    "max_prompt_chars": "IMGSIM_MAX_PROMPT_CHARS",
}


def _read(cls: type, table: Mapping[str, str], env: Mapping[str, str]) -> dict[str, Any]:
    """The fields of `cls` that the environment sets, parsed by the type of their default."""
    defaults = cls()
    values: dict[str, Any] = {}
    for name, variable in table.items():
        raw = env.get(variable)
        if raw is None:
            continue
        default = getattr(defaults, name)
        if isinstance(default, bool):
            values[name] = raw.strip().lower() in ("1", "true", "yes")
        elif isinstance(default, int):
            values[name] = int(raw)
        elif isinstance(default, float):
            values[name] = float(raw)
        elif isinstance(default, tuple):
            values[name] = tuple(part.strip() for part in raw.split(",") if part.strip())
        else:
            values[name] = raw
    return values


def _write(obj: Any, table: Mapping[str, str]) -> dict[str, str]:
    env = {}
    for name, variable in table.items():
        value = getattr(obj, name)
        if isinstance(value, bool):
            env[variable] = "true" if value else "false"
        elif isinstance(value, tuple):
            env[variable] = ",".join(value)
        else:
            env[variable] = str(value)
    return env
