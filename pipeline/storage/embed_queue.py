"""The embed queue: one small JSON message per image version to embed."""

from __future__ import annotations

import json
from typing import Any

from pipeline import aws
from pipeline.settings import Settings


class EmbedQueue(aws.Adapter):
    """SQS adapter. Queue URLs are resolved through the endpoint, never taken from stack
    outputs (moto's carry AWS host names)."""

    service = "sqs"

    def __init__(self, settings: Settings, client: Any | None = None) -> None:
        super().__init__(settings, client)
        self._url: str | None = None

    @property
    def url(self) -> str:
        if self._url is None:
            self._url = self.client.get_queue_url(QueueName=self.settings.embed_queue)["QueueUrl"]
        return self._url

    def request_embedding(
        self, image_id: str, s3_key: str, etag: str, priority: bool = False
    ) -> None:
        """`priority` marks a request a user is waiting for (GET /embeddings on a pending
        image); the embed DAG's trigger fires on any message, so it is embedded next run."""
        body: dict[str, str | bool] = {"image_id": image_id, "s3_key": s3_key, "etag": etag}
        if priority:
            body["priority"] = True
        self.client.send_message(QueueUrl=self.url, MessageBody=json.dumps(body))
