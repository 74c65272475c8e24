"""The wheels a model family's serving code needs, carried inside model.tar.gz.

The SageMaker PyTorch inference toolkit runs `pip install -r code/requirements.txt` at every
container start. Under network isolation, or in a VPC without a NAT gateway, no package index
can be reached, so the artifact carries the wheels (built for the serving image's Python and
platform, `SERVING_IMAGE`) and its requirements.txt installs from them only (`--no-index`,
`--find-links wheels`: pip reads both options from a requirements file and resolves a relative
find-links path against the file's directory). The family's own requirements are pinned to the
versions the suite runs (constraints.txt): the container computes the same vectors as the
local stack, whatever versions the image ships.

The wheels are downloaded once per requirement set into a wheelhouse outside the artifact
(build/wheelhouse/), so tests and rebuilds reuse them; pip's own cache serves a re-download.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename

from pipeline.embedding.serving_image import SERVING_IMAGE, ServingImage

ROOT = Path(__file__).resolve().parents[1]
WHEELHOUSE = ROOT / "build" / "wheelhouse"
CONSTRAINTS = ROOT / "constraints.txt"
WHEELS_DIR = "wheels"  # under code/, beside requirements.txt


class WheelDownloadError(RuntimeError):
    """The wheels could not be fetched: an artifact without them would need an index."""


def _key(requirements: list[str], image: ServingImage, constraints: str) -> str:
    identity = json.dumps([requirements, image.python_version, image.platforms, constraints])
    return hashlib.sha256(identity.encode()).hexdigest()[:16]


def wheelhouse(
    requirements: list[str],
    image: ServingImage = SERVING_IMAGE,
    cache_dir: Path = WHEELHOUSE,
    constraints: Path = CONSTRAINTS,
) -> Path:
    """The directory of wheels `requirements` resolve to on the image (binary wheels only, with
    every dependency), downloaded once per requirements, image and constraints."""
    pins = constraints.read_text() if constraints.exists() else ""
    dest = Path(cache_dir) / _key(requirements, image, pins)
    if dest.is_dir():
        return dest
    partial = dest.with_name(f".{dest.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}")
    command = [
        *(sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check"),
        *("--only-binary=:all:", "--implementation", "cp"),
        *(arg for platform in image.platforms for arg in ("--platform", platform)),
        *("--python-version", image.python_version),
        *(("-c", str(constraints)) if constraints.exists() else ()),
        *("--dest", str(partial), *requirements),
    ]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=600)
        if result.returncode:
            raise WheelDownloadError(
                f"pip could not download the serving wheels of {requirements} for Python "
                f"{image.python_version} on {image.platforms[0]} (the artifact must carry them: "
                f"the serving container may have no network): {result.stderr.strip()[-1500:]}"
            )
        try:
            os.replace(partial, dest)
        except OSError:  # another process put the same wheels in place first
            if not dest.is_dir():
                raise
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return dest


def wheel_versions(wheel_dir: Path) -> dict[str, str]:
    """{canonical name: version} of the wheels in a directory."""
    versions = {}
    for wheel in Path(wheel_dir).glob("*.whl"):
        name, version, _, _ = parse_wheel_filename(wheel.name)
        versions[str(name)] = str(version)
    return versions


def pinned(requirements: list[str], wheel_dir: Path) -> list[str]:
    """Each requirement as `name==version` of its wheel: pip then installs that version even
    where the image already has another one that would satisfy the range."""
    versions = wheel_versions(wheel_dir)
    lines = []
    for line in requirements:
        name = canonicalize_name(Requirement(line).name)
        if name not in versions:
            raise WheelDownloadError(f"no wheel of {name} in {wheel_dir}")
        lines.append(f"{name}=={versions[name]}")
    return lines


def requirements_txt(family: str, pins: list[str]) -> str:
    """code/requirements.txt: the options that keep pip off every index, then the pins."""
    return (
        f"# Installed by the serving container for the {family} family from the wheels under\n"
        f"# code/{WHEELS_DIR}/ (no index: the container may have no network).\n"
        f"--no-index\n--find-links {WHEELS_DIR}\n" + "".join(f"{pin}\n" for pin in pins)
    )
