from dataclasses import fields

from pipeline.settings import Limits, Settings


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


def test_to_env_round_trips_every_field_and_limit():
    """Every field away from its default, so a field one direction forgets fails here."""
    settings = Settings(
        region="eu-west-1",
        bucket="x",
        images_table="I2",
        embeddings_table="E2",
        shard_manifests_table="M2",
        ingest_queue="iq",
        embed_queue="eq",
        upload_prefix="up/",
        generated_prefix="gen/",
        presign_expiry_seconds=60,
        api_keys=("a", "b"),
        embed_endpoint="ep",
        image_model_id="amazon.nova-canvas-v1:0",
        image_size=768,
        allow_https_urls=True,
        limits=Limits(
            max_body_bytes=1, max_object_bytes=2, max_side=3, max_pixels=4, max_prompt_chars=5
        ),
    ).with_endpoint("http://127.0.0.1:9")
    assert all(getattr(settings, f.name) != getattr(Settings(), f.name) for f in fields(Settings))
    assert all(
        getattr(settings.limits, f.name) != getattr(Limits(), f.name) for f in fields(Limits)
    )
    assert Settings.from_env(settings.to_env()) == settings
