"""The API's limits against what AWS wraps around a body: the largest body the app reads,
inside the real REST proxy event with API Gateway's largest headers, stays under Lambda's
synchronous payload quota; the largest image, base64 in JSON with the longest prompt, stays
under the body limit."""

import base64
import json

from pipeline.local.api_gateway import invocation_payload_bytes
from pipeline.settings import LAMBDA_SYNC_PAYLOAD_BYTES, Limits
from tests.events import api_gateway_get_image

# API Gateway (REST): the request line and the header values together, at most
API_GATEWAY_MAX_HEADER_BYTES = 10_240


def _largest_post_event(body: str) -> dict:
    event = api_gateway_get_image("0123456789abcdef")
    event.update(httpMethod="POST", path="/images", pathParameters={"proxy": "images"})
    event["requestContext"].update(httpMethod="POST", path="/v1/images")
    used = len("POST /v1/images HTTP/1.1") + sum(len(v) for v in event["headers"].values())
    # the rest of the header budget as characters JSON escapes (each `"` becomes `\"`)
    padding = '"' * (API_GATEWAY_MAX_HEADER_BYTES - used)
    event["headers"]["X-Padding"] = padding
    event["multiValueHeaders"]["X-Padding"] = [padding]
    event["body"] = body
    return event


def test_the_largest_body_fits_lambdas_quota_after_api_gateway_wraps_it():
    limits = Limits()
    body = json.dumps({"image_data": "A" * (limits.max_body_bytes - 20), "prompt": ""})
    body = body[: limits.max_body_bytes]
    assert len(body) == limits.max_body_bytes
    size = invocation_payload_bytes(_largest_post_event(body))
    assert size < LAMBDA_SYNC_PAYLOAD_BYTES, (size, LAMBDA_SYNC_PAYLOAD_BYTES)


def test_the_largest_image_with_the_longest_prompt_fits_the_body_limit():
    limits = Limits()
    encoded = base64.b64encode(b"\0" * limits.max_image_bytes).decode()
    # the prompt as a client that escapes every non-ASCII character sends it (6 bytes each)
    prompt = "\u00e9" * limits.max_prompt_chars
    body = json.dumps({"image_data": "data:image/png;base64," + encoded, "prompt": prompt})
    assert len(body.encode()) <= limits.max_body_bytes
