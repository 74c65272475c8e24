"""What the serving container's start does with code/requirements.txt, where the model sets
`EnableNetworkIsolation`: the inference toolkit runs `pip install -r code/requirements.txt` at
every start, and an isolated container reaches no package index, so the install must succeed
from what the artifact carries. The emulator's models run in its own process (whose packages
are already installed), so it does not install: it resolves the requirements the way the
container would, for the image's Python and platform, with no index and every proxy pointed at
a closed port, and refuses the model with pip's reason when they do not resolve.

The isolation of the handler's own calls (an isolated container has no AWS credentials and no
network: it cannot read s3:// inputs itself) is not emulated."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from pipeline.embedding.serving_image import SERVING_IMAGE

NO_NETWORK = "http://127.0.0.1:9"  # the discard port: nothing listens, every request fails
_PYTHON_TAG = re.compile(r"-py(\d)(\d+)")


class NotSelfContained(RuntimeError):
    """An isolated model's requirements need a package index."""


def image_python(image_uri: str) -> str:
    """The Python of a serving image, from its tag's pyXY (e.g. 2.6-cpu-py312 -> 3.12); the
    serving image's own where the tag names none."""
    match = _PYTHON_TAG.search(image_uri.rsplit(":", 1)[-1])
    return f"{match[1]}.{match[2]}" if match else SERVING_IMAGE.python_version


def check_offline_install(code_dir: Path, image_uri: str = "") -> None:
    """Raise NotSelfContained when code/requirements.txt cannot be installed without an index
    on the image; nothing to check when the artifact has no requirements."""
    requirements = Path(code_dir) / "requirements.txt"
    if not requirements.exists():
        return
    proxies = {name: NO_NETWORK for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")}
    env = {
        **{k: v for k, v in os.environ.items() if k.upper() not in ("NO_PROXY", *proxies)},
        **proxies,
        **{name.lower(): value for name, value in proxies.items()},
        "PIP_CONFIG_FILE": os.devnull,  # no index or find-links from this machine's pip config
    }
    platforms = (arg for platform in SERVING_IMAGE.platforms for arg in ("--platform", platform))
    with tempfile.TemporaryDirectory(prefix="imgsim-isolated-") as target:
        command = [
            *(sys.executable, "-m", "pip", "install", "--dry-run", "--quiet"),
            *("--disable-pip-version-check", "--no-cache-dir", "--retries", "0"),
            *("--timeout", "2", "--no-index", "--target", target),
            *("--only-binary=:all:", "--implementation", "cp", *platforms),
            *("--python-version", image_python(image_uri), "-r", str(requirements)),
        ]
        result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    if result.returncode:
        said = " ".join(
            line.strip() for line in result.stderr.splitlines() if line.startswith("ERROR")
        )
        raise NotSelfContained(
            "the model sets EnableNetworkIsolation, so the container reaches no package index, "
            "and code/requirements.txt does not install from the artifact alone (vendor the "
            f"wheels under code/ and install them with --no-index --find-links): "
            f"{said or result.stderr.strip()[-1000:]}"
        )
