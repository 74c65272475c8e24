"""The deployed entry point shared by the handlers: built once per container, from the
function's environment: in Lambda's init phase, so that a SnapStart snapshot (and a
provisioned container) already holds the settings, the stores and the app (the stores make
most boto3 clients on first use); elsewhere (an import in a test or a tool) on first use."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from pipeline.ingest.ingestor import Ingestor
from pipeline.settings import Settings

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


class EnvironmentHandler:
    def __init__(self, make_handler: Callable[[Ingestor], Handler]) -> None:
        self._make = make_handler
        self._built: Handler | None = None
        if os.environ.get("AWS_LAMBDA_FUNCTION_NAME"):  # set by Lambda, in init already
            self.build()

    @property
    def built(self) -> bool:
        return self._built is not None

    def build(self) -> Handler:
        if self._built is None:
            self._built = self._make(Ingestor.from_settings(Settings.from_env()))
        return self._built

    def __call__(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        return self.build()(event, context)


def handler_from_environment(make_handler: Callable[[Ingestor], Handler]) -> EnvironmentHandler:
    return EnvironmentHandler(make_handler)
