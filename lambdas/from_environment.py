"""The deployed entry point shared by the handlers: build once per container, from the
function's environment, on first use."""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any

from pipeline.ingest.ingestor import Ingestor
from pipeline.settings import Settings

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


def handler_from_environment(make_handler: Callable[[Ingestor], Handler]) -> Handler:
    @cache
    def build() -> Handler:
        return make_handler(Ingestor.from_settings(Settings.from_env()))

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        return build()(event, context)

    return handler
