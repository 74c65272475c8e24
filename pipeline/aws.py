"""boto3 clients built from Settings: one place decides session, endpoint and region."""

from __future__ import annotations

import threading
from functools import cache
from typing import Any

import boto3
from botocore.config import Config

from pipeline.settings import Settings

_RETRIES = Config(retries={"max_attempts": 5, "mode": "adaptive"})
# Sessions are not thread-safe (their loaders fill caches lazily); the clients they make are.
_SESSIONS = threading.Lock()


@cache
def _default_session() -> boto3.Session:
    """The default chain's session, one per process: a session caches the service models and
    endpoint data its clients load, so only a process's first client of a service pays for
    them (docs/performance.md, Lambda package and cold start). Its credentials are found once,
    as boto3's own default session does."""
    return boto3.session.Session()


def client(
    settings: Settings,
    service: str,
    session: boto3.Session | None = None,
    config: Config | None = None,
) -> Any:
    """A new boto3 client for `service`, pointed at its local endpoint when one is set, in the
    service's region (Bedrock's own for Bedrock). Its credentials come from `session`, else the
    settings' session (an Airflow task's connection), else boto3's default chain."""
    config = _RETRIES.merge(config) if config else _RETRIES
    if service == "s3":
        # Presigned URLs in SigV4: SigV2 is deprecated for S3 and refused in newer regions.
        config = config.merge(Config(signature_version="s3v4"))
    if service == "s3" and settings.endpoint("s3"):
        # Path-style keeps presigned URLs on the loopback host instead of <bucket>.host.
        config = config.merge(Config(s3={"addressing_style": "path"}))
    with _SESSIONS:
        session = session or settings.session or _default_session()
        return session.client(
            service,
            region_name=settings.region_of(service),
            endpoint_url=settings.endpoint(service),
            config=config,
        )


class Adapter:
    """Base of the AWS adapters: takes a boto3 client, or makes one lazily from settings
    (powertools' persistence-layer pattern), so tests hand in clients for the local stack."""

    service = ""

    def __init__(self, settings: Settings, client: Any | None = None) -> None:
        self.settings = settings
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = client(self.settings, self.service)
        return self._client
