"""The SageMaker inference contract on a tiny random CLIP loaded through the real loader."""

from __future__ import annotations

import io
import json
import tarfile

import numpy as np
import pytest
from PIL import Image

from sagemaker_jobs.image_embed.code import inference
from sagemaker_jobs.image_embed.code.batch import Request, embed_requests
from sagemaker_jobs.image_embed.code.embedders import ColorLayoutEmbedder
from tests.helpers import gradient_jpeg, image_bytes


@pytest.fixture(scope="module")
def model(tiny_clip_artifact, tmp_path_factory):
    model_dir = tmp_path_factory.mktemp("tiny")
    with tarfile.open(tiny_clip_artifact) as tar:
        tar.extractall(model_dir, filter="data")
    assert (model_dir / "code" / "inference.py").exists()
    return inference.model_fn(str(model_dir))


def _photos(n: int) -> list[bytes]:
    photos = []
    for i in range(n):
        image = Image.new("RGB", (96 + 7 * i, 80), (30 * i % 256, 90, 200 - 10 * i))
        image.paste((255 - 20 * i, 20, 60), (10, 10, 40 + i, 50))
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG")
        photos.append(buffer.getvalue())
    return photos


def _run(model, photos: list[bytes]) -> list[dict]:
    requests = [Request(image_id=str(i), data=p) for i, p in enumerate(photos)]
    return inference.predict_fn(requests, model)


def test_vectors_are_normalized_float32_with_the_model_id(model):
    results = _run(model, _photos(3))
    for result in results:
        vector = np.asarray(result["embedding"], dtype=np.float32)
        assert vector.shape == (32,) and abs(np.linalg.norm(vector) - 1) < 1e-5
        assert result["model_id"] == "clip-tiny-random-init-seed0"


def test_batch_result_equals_one_at_a_time(model):
    photos = _photos(7)
    batched = np.asarray([r["embedding"] for r in _run(model, photos)])
    single = np.asarray([_run(model, [p])[0]["embedding"] for p in photos])
    np.testing.assert_allclose(batched, single, atol=1e-5)


def test_deterministic_across_runs(model):
    photos = _photos(4)
    assert _run(model, photos) == _run(model, photos)


def test_a_bad_image_is_an_error_line_and_the_rest_embed(model):
    photos = _photos(3)
    results = _run(model, [photos[0], b"not an image", photos[1], gradient_jpeg()[:500], photos[2]])
    assert [("embedding" in r) for r in results] == [True, False, True, False, True]
    assert [r["image_id"] for r in results] == ["0", "1", "2", "3", "4"]
    assert all(r["error"] for r in results if "embedding" not in r)


def test_json_lines_round_trip_through_the_contract(model):
    fetched = {"s3://b/a.jpg": gradient_jpeg(), "s3://b/b.png": image_bytes("PNG")}
    model._s3 = None
    body = b'{"image_id": "a", "s3_uri": "s3://b/a.jpg"}\n\n{"image_id": "b", "s3_uri": "s3://b/b.png"}\n'
    requests = inference.input_fn(body, "application/jsonlines")
    results = embed_requests(requests, model.embedder, fetched.__getitem__)
    out = inference.output_fn(results, "application/jsonlines")
    lines = [json.loads(line) for line in out.splitlines()]
    assert [line["image_id"] for line in lines] == ["a", "b"]


def test_single_image_mode_and_refused_content_types(model):
    [request] = inference.input_fn(gradient_jpeg(), "image/jpeg")
    [result] = inference.predict_fn([request], model)
    assert json.loads(inference.output_fn([result], "application/json"))["embedding"]
    with pytest.raises(inference.UnsupportedContentType):
        inference.input_fn(b"a,b", "text/csv")
    with pytest.raises(ValueError, match="line 1"):
        inference.input_fn(b'{"no_id": 1}\n', "application/jsonlines")


def test_preprocessing_is_clips_own(model):
    processor = model.embedder.processor
    assert processor.size == {"shortest_edge": 224}
    assert processor.crop_size == {"height": 224, "width": 224}
    np.testing.assert_allclose(processor.image_mean, [0.48145466, 0.4578275, 0.40821073])
    pixels = model.embedder.preprocess(Image.open(io.BytesIO(gradient_jpeg((300, 200)))))
    assert pixels.shape == (3, 224, 224) and pixels.dtype == np.float32


def test_color_layout_ranks_by_colour():
    embedder = ColorLayoutEmbedder()

    def vec(color):
        image = Image.new("RGB", (64, 64), color)
        return embedder.embed(embedder.preprocess(image)[None])[0]

    red, dark_red, blue = vec((220, 20, 20)), vec((180, 30, 30)), vec((20, 20, 220))
    assert red.shape == (embedder.dim,) and abs(np.linalg.norm(red) - 1) < 1e-6
    assert red @ dark_red > red @ blue


@pytest.mark.parametrize("precision,min_cosine", [("fp32", 0.99999), ("int8", 0.99)])
def test_onnx_option_agrees_with_torch(model, tmp_path, precision, min_cosine):
    from sagemaker_jobs.build_model import build

    artifact = tmp_path / f"tiny-{precision}.tar.gz"
    model_id = build(artifact, random_config="tiny", seed=0, onnx=precision)
    assert model_id == "clip-tiny-random-init-seed0" + ("-int8" if precision == "int8" else "")
    model_dir = tmp_path / "unpacked"
    with tarfile.open(artifact) as tar:
        tar.extractall(model_dir, filter="data")
    assert not list(model_dir.glob("*.safetensors"))
    onnx_model = inference.model_fn(str(model_dir))
    photos = _photos(5)
    reference = np.asarray([r["embedding"] for r in _run(model, photos)])
    results = _run(onnx_model, photos)
    vectors = np.asarray([r["embedding"] for r in results])
    assert results[0]["model_id"] == model_id
    assert (vectors * reference).sum(axis=1).min() >= min_cosine


@pytest.mark.parametrize(
    "size", [(300, 200), (200, 300), (224, 224), (641, 479), (100, 60), (225, 1000), (1, 1)]
)
def test_fast_preprocessing_equals_clip_image_processor(model, size):
    rng = np.random.default_rng(size[0] * 7 + size[1])
    image = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    ours = model.embedder.preprocess(image)
    theirs = model.embedder.processor(images=image, return_tensors="np")["pixel_values"][0]
    assert ours.shape == theirs.shape == (3, 224, 224)
    np.testing.assert_allclose(ours, theirs, atol=1e-5)


def test_the_gpu_hand_off_uint8_crops_normalised_by_torch_gives_the_same_vectors(model):
    """On a GPU the preparation threads hand over uint8 crops and torch normalises them on the
    device; here the same code runs on the CPU (no GPU in CI) against the float path."""
    embedder = model.embedder
    assert embedder.device.type == "cpu" and embedder.prepare(Image.new("RGB", (9, 9))).dtype == (
        np.float32
    )
    images = [Image.open(io.BytesIO(p)) for p in _photos(4)]
    crops = np.stack([embedder.preprocess.fast.resize_crop(image) for image in images])
    assert crops.dtype == np.uint8 and crops.shape == (4, 224, 224, 3)
    floats = np.stack([embedder.preprocess(image) for image in images])
    np.testing.assert_allclose(embedder.preprocess.fast.normalize(crops), floats, atol=1e-6)
    np.testing.assert_allclose(embedder.embed_prepared(crops), embedder.embed(floats), atol=1e-5)


def test_half_precision_is_refused_on_a_cpu(tiny_clip_artifact, tmp_path):
    from sagemaker_jobs.image_embed.code.embedders import load_embedder

    with tarfile.open(tiny_clip_artifact) as tar:
        tar.extractall(tmp_path, filter="data")
    with pytest.raises(ValueError, match="fp16 on cuda"):
        load_embedder(tmp_path, precision="fp16")


class _Context:
    """What TorchServe hands model_fn: the worker's system properties."""

    def __init__(self, gpu_id):
        self.system_properties = {"gpu_id": gpu_id, "model_dir": "/opt/ml/model"}


def test_each_model_server_worker_takes_the_gpu_torchserve_gave_it():
    assert inference.worker_device(_Context(3), cuda_available=True) == "cuda:3"
    assert inference.worker_device(_Context(None), cuda_available=True) is None
    assert inference.worker_device(_Context(1), cuda_available=False) is None  # CPU instance


def test_preparation_threads_share_the_cores_among_the_container_s_workers(monkeypatch):
    monkeypatch.setattr(inference.os, "sched_getaffinity", lambda _: set(range(48)), raising=False)
    monkeypatch.setenv("SAGEMAKER_TS_MAX_WORKERS", "4")  # ml.g5.12xlarge: 4 GPUs, 48 vCPUs
    assert inference.default_workers() == 8
    monkeypatch.setattr(inference.os, "sched_getaffinity", lambda _: set(range(16)), raising=False)
    assert inference.default_workers() == 4  # 16 cores among 4 workers
    monkeypatch.setenv("SAGEMAKER_TS_MAX_WORKERS", "1")
    assert inference.default_workers() == 8  # one worker: its cores, at most 8
    monkeypatch.delenv("SAGEMAKER_TS_MAX_WORKERS")
    monkeypatch.setattr(inference.os, "sched_getaffinity", lambda _: {0, 1}, raising=False)
    assert inference.default_workers() == 2
