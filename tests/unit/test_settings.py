from dataclasses import fields, replace

from pipeline import aws
from pipeline.generation.bedrock import BedrockImages
from pipeline.settings import LIMITS_VARIABLES, SETTINGS_VARIABLES, Limits, Settings


def test_no_endpoint_means_real_aws():
    settings = Settings.from_env({})
    assert settings.endpoint("s3") is None and settings.bucket == "imgsim-local"
    assert settings.images_table == "Images" and settings.presign_expiry_seconds == 900


def test_per_service_endpoints_and_names_come_from_the_environment():
    settings = Settings.from_env(
        {
            "AWS_REGION": "eu-west-1",
            "AWS_ENDPOINT_URL": "http://127.0.0.1:1",
            "AWS_ENDPOINT_URL_S3": "http://127.0.0.1:2",
            "IMGSIM_BUCKET": "b",
            "IMGSIM_IMAGES_TABLE": "I",
            "IMGSIM_EMBED_QUEUE": "q",
            "IMGSIM_PRESIGN_EXPIRY_SECONDS": "60",
            "IMGSIM_MAX_SIDE": "1024",
        }
    )
    assert settings.region == "eu-west-1"
    assert settings.endpoint("s3") == "http://127.0.0.1:2"
    assert settings.endpoint("dynamodb") == "http://127.0.0.1:1"
    assert (settings.bucket, settings.images_table, settings.embed_queue) == ("b", "I", "q")
    assert settings.presign_expiry_seconds == 60 and settings.limits.max_side == 1024


def test_to_env_round_trips():
    settings = Settings(bucket="x", ingest_queue="iq").with_endpoint("http://127.0.0.1:9")
    assert Settings.from_env(settings.to_env()) == settings


def _changed(value: object) -> object:
    """A value of the same type that differs from `value`."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 7
    if isinstance(value, float):
        return value / 2
    if isinstance(value, tuple):
        return ("a", "b")
    return f"{value}-x"


def test_every_setting_is_in_the_environment_table():
    environment = set(SETTINGS_VARIABLES) | {"region", "endpoints", "limits"}
    assert {f.name for f in fields(Settings) if f.compare} == environment
    assert {f.name for f in fields(Limits)} == set(LIMITS_VARIABLES)


def test_to_env_round_trips_every_field_and_limit():
    """Every field away from its default, so a field one direction forgets fails here."""
    settings = replace(
        Settings(region="eu-west-1"),
        **{name: _changed(getattr(Settings(), name)) for name in SETTINGS_VARIABLES},
        limits=Limits(**{name: _changed(getattr(Limits(), name)) for name in LIMITS_VARIABLES}),
    ).with_endpoint("http://127.0.0.1:9")
    assert Settings.from_env(settings.to_env()) == settings


def test_bedrock_clients_are_made_in_the_bedrock_region():
    """The default model is served in us-west-2 alone: Bedrock's clients go there wherever the
    stack runs; the others stay in the stack's region."""
    settings = Settings.from_env({"AWS_REGION": "eu-west-1"})
    assert settings.bedrock_region == "us-west-2"
    for service in ("bedrock", "bedrock-runtime"):
        assert aws.client(settings, service).meta.region_name == "us-west-2"
    assert aws.client(settings, "s3").meta.region_name == "eu-west-1"
    moved = Settings.from_env({"AWS_REGION": "eu-west-1", "IMGSIM_BEDROCK_REGION": "us-east-1"})
    assert BedrockImages(moved).client.meta.region_name == "us-east-1"
