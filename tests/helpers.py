"""Small test helpers: sample images made in memory, and queue readers."""

from __future__ import annotations

import io
import json
from typing import Any

from PIL import Image

from pipeline import aws
from pipeline.settings import Settings


def image_bytes(fmt: str = "JPEG", size: tuple[int, int] = (64, 48), color: tuple = (200, 30, 60)
                ) -> bytes:
    buffer = io.BytesIO()
    mode = "RGB" if fmt != "GIF" else "P"
    Image.new(mode, size, color if mode == "RGB" else 1).save(buffer, format=fmt)
    return buffer.getvalue()


def gradient_jpeg(size: tuple[int, int] = (128, 96)) -> bytes:
    """A JPEG with real content (so truncating it really cuts pixel data)."""
    image = Image.new("RGB", size)
    image.putdata([(x * 2 % 256, y * 2 % 256, (x + y) % 256)
                   for y in range(size[1]) for x in range(size[0])])
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def queue_url(settings: Settings, name: str) -> str:
    return aws.client(settings, "sqs").get_queue_url(QueueName=name)["QueueUrl"]


def drain_messages(settings: Settings, name: str) -> list[dict[str, Any]]:
    """Receive and delete every visible message of a queue; return their JSON bodies."""
    sqs = aws.client(settings, "sqs")
    url = queue_url(settings, name)
    bodies: list[dict[str, Any]] = []
    while True:
        messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10,
                                       WaitTimeSeconds=0).get("Messages", [])
        if not messages:
            return bodies
        for message in messages:
            bodies.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
