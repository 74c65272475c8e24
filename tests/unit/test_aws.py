from dataclasses import replace

import boto3

from pipeline import aws
from pipeline.settings import Settings

SETTINGS = Settings(endpoints={"s3": "http://127.0.0.1:9", "dynamodb": "http://127.0.0.1:9"})


def test_each_call_is_a_new_client_but_a_service_model_is_loaded_once_per_process():
    first, second = aws.client(SETTINGS, "dynamodb"), aws.client(SETTINGS, "dynamodb")
    # a caller may register event hooks on its client: they stay on that client
    assert first is not second and first.meta.events is not second.meta.events
    assert (
        first.meta.service_model._service_description
        is second.meta.service_model._service_description
    )
    assert first.meta.endpoint_url == "http://127.0.0.1:9"


def test_a_session_given_or_in_the_settings_signs_instead_of_the_default_chain():
    keys = boto3.Session(aws_access_key_id="given", aws_secret_access_key="x")
    from_settings = aws.client(replace(SETTINGS, session=keys), "s3")
    passed = aws.client(SETTINGS, "s3", session=keys)
    for client in (from_settings, passed):
        assert client._request_signer._credentials.access_key == "given"
