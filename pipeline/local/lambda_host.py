"""The Lambda handlers hosted in-process on loopback: the event pump feeds the ingest handler
as an SQS event source mapping would, and the API Gateway adapter serves the API handler."""

from __future__ import annotations

from dataclasses import dataclass

from lambdas.api.handler import make_handler as make_api_handler
from lambdas.ingest.handler import make_handler as make_ingest_handler
from pipeline.ingest.ingestor import Ingestor
from pipeline.local.api_gateway import LocalApi
from pipeline.local.event_pump import EventPump
from pipeline.settings import Settings


@dataclass
class LambdaHost:
    pump: EventPump
    api: LocalApi

    @classmethod
    def create(
        cls, settings: Settings, api_host: str = "127.0.0.1", api_port: int = 0
    ) -> LambdaHost:
        ingestor = Ingestor.from_settings(settings)
        pump = EventPump(settings, make_ingest_handler(ingestor))
        api = LocalApi(make_api_handler(Ingestor.from_settings(settings)), api_host, api_port)
        return cls(pump=pump, api=api)

    def start(self, pump_wait_seconds: int = 2) -> LambdaHost:
        self.api.start()
        self.pump.start(pump_wait_seconds)
        return self

    def stop(self) -> None:
        self.pump.stop()
        self.api.stop()
