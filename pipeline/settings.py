"""One settings object, read from the environment once at the edge and passed down."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

# Service name -> the environment variable that points it elsewhere. These are boto3's
# own service-specific endpoint variables, so the AWS CLI honours the same settings.
ENDPOINT_VARIABLES: dict[str, str] = {
    "s3": "AWS_ENDPOINT_URL_S3",
    "dynamodb": "AWS_ENDPOINT_URL_DYNAMODB",
    "sqs": "AWS_ENDPOINT_URL_SQS",
    "cloudformation": "AWS_ENDPOINT_URL_CLOUDFORMATION",
    "bedrock-runtime": "AWS_ENDPOINT_URL_BEDROCK_RUNTIME",
    "sagemaker": "AWS_ENDPOINT_URL_SAGEMAKER",
    "sagemaker-runtime": "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME",
}

MB = 1024 * 1024


@dataclass(frozen=True)
class Limits:
    """Input rules of DESIGN.md section 3."""

    max_body_bytes: int = 6 * MB
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
    ingest_queue: str = "imgsim-ingest"
    embed_queue: str = "imgsim-embed"
    upload_prefix: str = "uploads/"
    generated_prefix: str = "generated/"
    presign_expiry_seconds: int = 900
    api_keys: tuple[str, ...] = ()  # when set, the API wants one of them in x-api-key
    embed_endpoint: str = "imgsim-embed"  # SageMaker endpoint for single-image embedding
    image_model_id: str = "amazon.titan-image-generator-v2:0"  # GET /images?prompt=
    image_size: int = 512
    allow_https_urls: bool = False  # `url` inputs: s3:// of the bucket always, https:// if set
    endpoints: Mapping[str, str] = field(default_factory=dict)
    limits: Limits = field(default_factory=Limits)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        default = cls()
        general = env.get("AWS_ENDPOINT_URL", "")
        endpoints = {
            service: env.get(var) or general
            for service, var in ENDPOINT_VARIABLES.items()
            if env.get(var) or general
        }
        limits = Limits(
            max_body_bytes=int(env.get("IMGSIM_MAX_BODY_BYTES", Limits.max_body_bytes)),
            max_object_bytes=int(env.get("IMGSIM_MAX_OBJECT_BYTES", Limits.max_object_bytes)),
            max_side=int(env.get("IMGSIM_MAX_SIDE", Limits.max_side)),
            max_pixels=int(env.get("IMGSIM_MAX_PIXELS", Limits.max_pixels)),
            max_prompt_chars=int(env.get("IMGSIM_MAX_PROMPT_CHARS", Limits.max_prompt_chars)),
        )
        return cls(
            region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or default.region,
            bucket=env.get("IMGSIM_BUCKET", default.bucket),
            images_table=env.get("IMGSIM_IMAGES_TABLE", default.images_table),
            embeddings_table=env.get("IMGSIM_EMBEDDINGS_TABLE", default.embeddings_table),
            shard_manifests_table=env.get(
                "IMGSIM_SHARD_MANIFESTS_TABLE", default.shard_manifests_table
            ),
            ingest_queue=env.get("IMGSIM_INGEST_QUEUE", default.ingest_queue),
            embed_queue=env.get("IMGSIM_EMBED_QUEUE", default.embed_queue),
            presign_expiry_seconds=int(
                env.get("IMGSIM_PRESIGN_EXPIRY_SECONDS", default.presign_expiry_seconds)
            ),
            embed_endpoint=env.get("IMGSIM_EMBED_ENDPOINT", default.embed_endpoint),
            image_model_id=env.get("IMGSIM_IMAGE_MODEL_ID", default.image_model_id),
            image_size=int(env.get("IMGSIM_IMAGE_SIZE", default.image_size)),
            allow_https_urls=env.get("IMGSIM_ALLOW_HTTPS_URLS", "").lower() in ("1", "true"),
            api_keys=tuple(k.strip() for k in env.get("IMGSIM_API_KEYS", "").split(",")
                           if k.strip()),
            endpoints=endpoints,
            limits=limits,
        )

    def endpoint(self, service: str) -> str | None:
        return self.endpoints.get(service)

    def with_endpoint(self, url: str, services: tuple[str, ...] = ("s3", "dynamodb", "sqs",
                      "cloudformation")) -> Settings:
        """The same settings with the given services pointed at one local endpoint."""
        return replace(self, endpoints={**self.endpoints, **{s: url for s in services}})

    def to_env(self) -> dict[str, str]:
        """The environment that makes `from_env` (and the AWS CLI) see these settings."""
        env = {
            "AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,
            "IMGSIM_BUCKET": self.bucket,
            "IMGSIM_IMAGES_TABLE": self.images_table,
            "IMGSIM_EMBEDDINGS_TABLE": self.embeddings_table,
            "IMGSIM_SHARD_MANIFESTS_TABLE": self.shard_manifests_table,
            "IMGSIM_INGEST_QUEUE": self.ingest_queue,
            "IMGSIM_EMBED_QUEUE": self.embed_queue,
            "IMGSIM_PRESIGN_EXPIRY_SECONDS": str(self.presign_expiry_seconds),
            "IMGSIM_EMBED_ENDPOINT": self.embed_endpoint,
            "IMGSIM_IMAGE_MODEL_ID": self.image_model_id,
            "IMGSIM_IMAGE_SIZE": str(self.image_size),
        }
        if self.allow_https_urls:
            env["IMGSIM_ALLOW_HTTPS_URLS"] = "true"
        if self.api_keys:
            env["IMGSIM_API_KEYS"] = ",".join(self.api_keys)
        env.update({ENDPOINT_VARIABLES[s]: url for s, url in self.endpoints.items()})
        return env
