"""Export a CLIP image tower to ONNX (fp32), and quantize it (dynamic int8), for the
embedding job's ONNX Runtime option."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any


def export_image_tower(model_dir: Path, output: Path, opset: int = 17) -> Path:
    """pixel_values [N, 3, H, W] -> image_embeds [N, D] (not normalized; the job normalizes)."""
    import torch
    from transformers import CLIPConfig, CLIPVisionModelWithProjection, logging

    config = CLIPConfig.from_pretrained(model_dir)
    vision = config.vision_config
    vision.projection_dim = config.projection_dim
    logging.set_verbosity_error()
    model = CLIPVisionModelWithProjection.from_pretrained(model_dir, config=vision).eval()

    class ImageTower(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
            return self.model(pixel_values=pixel_values).image_embeds

    size = vision.image_size
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer notes about shape checks on fixed 224 inputs
        torch.onnx.export(
            ImageTower().eval(),
            (torch.zeros(2, 3, size, size),),
            str(output),
            input_names=["pixel_values"],
            output_names=["image_embeds"],
            dynamic_axes={"pixel_values": {0: "batch"}, "image_embeds": {0: "batch"}},
            opset_version=opset,
            dynamo=False,
        )
    return output


def quantize_int8(fp32: Path, output: Path) -> Path:
    """Dynamic int8 quantization of the weights (activations stay float)."""
    import logging

    from onnxruntime.quantization import QuantType, quantize_dynamic

    logging.getLogger().setLevel(logging.ERROR)  # its advice to pre-process is noise here
    quantize_dynamic(str(fp32), str(output), weight_type=QuantType.QInt8)
    return output


def quantize_static_int8(fp32: Path, output: Path, calibration: Any) -> Path:
    """Static int8 (QDQ, per-channel weights, uint8 activations, min-max ranges) calibrated
    on real pixels. For convolutional networks, where dynamic quantization of the convolutions
    is both slower and far less faithful."""
    import logging
    import tempfile

    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter(
                [{"pixel_values": calibration[i : i + 1]} for i in range(len(calibration))]
            )

        def get_next(self) -> dict[str, Any] | None:
            return next(self.batches, None)

    logging.getLogger().setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(fp32), str(prepared))
        quantize_static(
            str(prepared),
            str(output),
            Reader(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            weight_type=QuantType.QInt8,
            activation_type=QuantType.QUInt8,
        )
    return output
