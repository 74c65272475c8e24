"""`Idempotency-Key` for the routes that store an image (POST /images, GET /images?prompt=): a
client's retry gets the first answer back instead of a second image and a second Bedrock call.

powertools' idempotency utility over its DynamoDB persistence layer: one record per (route,
key) holding the answer, expiring after a day. The same key with another request is refused
(IdempotencyValidationError, answered 422); a retry while the first call still runs is refused
(IdempotencyAlreadyInProgressError, 409). A call that fails leaves no record, so it can be
retried. Without a key nothing changes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.typing import LambdaContext

from pipeline import aws
from pipeline.settings import Settings

RECORD_LIFETIME_SECONDS = 24 * 3600
Answer = dict[str, Any]


class Idempotency:
    def __init__(
        self,
        settings: Settings,
        client: Any | None = None,
        expires_after_seconds: int = RECORD_LIFETIME_SECONDS,
    ) -> None:
        self.config = IdempotencyConfig(
            event_key_jmespath="[route, key]",
            payload_validation_jmespath="request",
            expires_after_seconds=expires_after_seconds,
        )
        store = DynamoDBPersistenceLayer(
            table_name=settings.idempotency_table,
            boto3_client=client or aws.client(settings, "dynamodb"),
        )

        @idempotent_function(
            data_keyword_argument="call",
            persistence_store=store,
            config=self.config,
            key_prefix="imgsim-api",
        )
        def once(call: dict[str, Any], run: Callable[[], Answer]) -> Answer:
            return run()

        self._once = once

    def register(self, context: LambdaContext) -> None:
        """An in-progress record outlives a timed-out invocation only by the time it had left."""
        self.config.register_lambda_context(context)

    def __call__(
        self, route: str, key: str | None, request: dict[str, Any], run: Callable[[], Answer]
    ) -> Answer:
        """`run()`'s answer, or the answer of the first call with this key on this route."""
        if key is None:
            return run()
        answer: Answer = self._once(call={"route": route, "key": key, "request": request}, run=run)
        return answer
