"""Model artifacts by name, built once per content: the key hashes the build's arguments, the
builder's and the inference code's sources and (for pretrained EfficientNet) the weights file,
so a changed model or code gets a new artifact and an unchanged one is never rebuilt.

    efficientnet-lite0-imagenet           the local stack's default (ImageNet weights)
    efficientnet-lite0-imagenet-int8      static int8, built only to measure it (below the bar)
    efficientnet-lite0-random-init-seed0  same network, random weights (a floor)
    color-layout-v1                       colour descriptor, for cheap tests
    clip-vit-b-32-random-init-seed0       ViT-B/32-shaped CLIP, random weights (a floor)
    clip-tiny-random-init-seed0           tiny random CLIP, for tests
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from pathlib import Path
from typing import Any

from sagemaker_jobs import wheels
from sagemaker_jobs.build_model import CODE_DIR, REQUIREMENTS, build

HERE = Path(__file__).parent
NAMED: dict[str, dict[str, Any]] = {
    "efficientnet-lite0-imagenet": {"family": "efficientnet-lite0"},
    "efficientnet-lite0-imagenet-int8": {
        "family": "efficientnet-lite0",
        "onnx": "int8",
        "force_int8": True,
    },
    "efficientnet-lite0-random-init-seed0": {"family": "efficientnet-lite0", "pretrained": False},
    "color-layout-v1": {"family": "color-layout-v1"},
    "clip-vit-b-32-random-init-seed0": {"random_config": "vit-b-32", "seed": 0},
    "clip-tiny-random-init-seed0": {"random_config": "tiny", "seed": 0},
}


def content_key(arguments: dict[str, Any]) -> str:
    digest = hashlib.sha256(json.dumps(arguments, sort_keys=True).encode())
    for source in sorted([*HERE.glob("*.py"), *CODE_DIR.glob("*.py")]):
        digest.update(source.name.encode() + source.read_bytes())
    # the wheels the artifact carries: a new pin in constraints.txt is a new artifact
    digest.update(" ".join(sorted(p.name for p in _wheels_of(arguments).glob("*.whl"))).encode())
    if arguments.get("family") == "efficientnet-lite0" and arguments.get("pretrained", True):
        from sagemaker_jobs.efficientnet import file_digest, weights_file

        digest.update(file_digest(weights_file()).encode())
    return digest.hexdigest()[:16]


def _wheels_of(arguments: dict[str, Any]) -> Path:
    family = {"efficientnet-lite0": "efficientnet-lite0", "color-layout-v1": "color-layout"}.get(
        arguments.get("family", ""), "onnx-clip" if arguments.get("onnx") else "hf-clip"
    )
    return wheels.wheelhouse(REQUIREMENTS[family])


def cached_artifact(name: str, cache_dir: Path) -> tuple[Path, str]:
    """(model.tar.gz, model_id) of a named model, from the cache or built into it."""
    if name not in NAMED:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(NAMED)}")
    arguments = NAMED[name]
    path = Path(cache_dir) / f"{name}-{content_key(arguments)}.tar.gz"
    if not path.exists():
        # a partial file of this process's own: two processes building the same artifact at
        # once (two stacks coming up) each rename a whole file into place, the same content
        partial = path.with_name(f"{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.partial")
        try:
            model_id = build(partial, **arguments)
            if model_id != name:
                raise RuntimeError(f"{name!r} built a model with id {model_id!r}")
            os.replace(partial, path)
        finally:
            partial.unlink(missing_ok=True)
    return path, name
