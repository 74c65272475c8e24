"""The serving container's start, replayed on its Python: the inference toolkit's own command,
`python -m pip install -r code/requirements.txt`, in a fresh Python 3.12 venv with every proxy
pointed at a closed port (no index can be reached), then the handler run there on an image."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from pipeline.embedding.serving_image import SERVING_IMAGE
from pipeline.local.sagemaker.requirements import NO_NETWORK
from sagemaker_jobs.build_model import build
from sagemaker_jobs.image_embed.code import inference
from tests.helpers import gradient_jpeg

HANDLER = """
import json, sys
sys.path.insert(0, sys.argv[1] + "/code")  # the toolkit puts code/ on PYTHONPATH
import inference
model = inference.model_fn(sys.argv[1])
body = open(sys.argv[2], "rb").read()
print(inference.output_fn(inference.predict_fn(inference.input_fn(body, "image/jpeg"), model),
      "application/json"))
"""


def _serving_python() -> Path | None:
    version = SERVING_IMAGE.python_version
    root = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv")
    for candidate in sorted(root.glob(f"versions/{version}.*/bin/python{version}")):
        return candidate
    found = shutil.which(f"python{version}")
    return Path(found) if found else None


def test_the_container_start_installs_nothing_from_an_index_and_serves(tmp_path):
    python = _serving_python()
    if python is None:
        pytest.skip(f"no Python {SERVING_IMAGE.python_version} on this machine (the image's)")
    artifact = tmp_path / "model.tar.gz"
    build(artifact, family="color-layout-v1")
    model_dir = tmp_path / "model"
    with tarfile.open(artifact) as tar:
        tar.extractall(model_dir, filter="data")
    venv = tmp_path / "venv"
    subprocess.run([str(python), "-m", "venv", str(venv)], check=True, capture_output=True)
    offline = {
        **{k: v for k, v in os.environ.items() if not k.upper().endswith("_PROXY")},
        **{name: NO_NETWORK for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy")},
        "PIP_CONFIG_FILE": os.devnull,
        "PIP_RETRIES": "0",
        "PIP_TIMEOUT": "2",
    }
    install = subprocess.run(
        [
            str(venv / "bin/python"),
            "-m",
            "pip",
            "install",
            "-r",
            str(model_dir / "code/requirements.txt"),
        ],
        capture_output=True,
        text=True,
        env=offline,
        cwd=tmp_path,  # not code/: pip finds the wheels relative to the requirements file
    )
    assert install.returncode == 0, install.stdout + install.stderr

    image = tmp_path / "image.jpg"
    image.write_bytes(gradient_jpeg())
    served = subprocess.run(
        [str(venv / "bin/python"), "-c", HANDLER, str(model_dir), str(image)],
        capture_output=True,
        text=True,
        env=offline,
        check=True,
    )
    result = json.loads(served.stdout)
    assert result["model_id"] == "color-layout-v1"
    # the pinned wheels compute what the local stack computes
    local = inference.model_fn(str(model_dir))
    expected = inference.predict_fn(inference.input_fn(gradient_jpeg(), "image/jpeg"), local)
    assert result["embedding"] == expected[0]["embedding"]
