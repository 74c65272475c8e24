"""Amazon MWAA 3.3.1's Python environment, rebuilt in a Python 3.12 venv the way MWAA's image and
entrypoint install packages (aws/amazon-mwaa-docker-images, images/airflow/3.3.1):

- the image: `safe-pip-install -c airflow_constraints.txt <its packages>`
  (bootstrap/02-airflow/001-install-required-pip-packages.sh), where safe-pip-install is
  `pip3 install --constraint mwaa_essential_constraints.txt "$@"` (bin/airflow-user/);
- each container start: `safe-pip-install -r requirements.txt -c airflow_constraints.txt` when
  the requirements name no constraints file (python/mwaa/utils/user_requirements.py).

The two constraints files are MWAA's own, copied unchanged into tests/data/mwaa-3.3.1/. Left out
of the image's packages: psycopg2 and pycurl (they compile against libpq and libcurl headers);
their versions are pinned by the constraints like everything else, and the DAGs import neither.

A venv is built once per digest of everything that decides its contents and kept under
~/.cache/imgsim (outside the repository); a lock file serializes builders (pytest-xdist
workers, parallel sessions), a stamp file marks a finished build and is touched on each use.
Only the KEEP most recently used venvs stay (one is several hundred MB).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
from pathlib import Path

MWAA_PYTHON = "3.12"
DATA = Path(__file__).parents[1] / "data" / "mwaa-3.3.1"
AIRFLOW_CONSTRAINTS = DATA / "airflow_constraints.txt"
ESSENTIAL_CONSTRAINTS = DATA / "mwaa_essential_constraints.txt"
IMAGE_PACKAGES = (
    "apache-airflow-providers-amazon[aiobotocore]",
    "apache-airflow[celery,statsd]==3.3.1",
    "apache-airflow-core[gunicorn]==3.3.1",
    "apache-airflow-providers-postgres",
    "apache-airflow-providers-fab",
    "celery[sqs]",
    "boto3-stubs[logs]",
    "boto3-stubs[sqs]",
    "watchtower",
    "fluent-logger",
    "virtualenv",
    "apache-airflow-providers-standard",
)
BUILD_TIMEOUT_SECONDS = 900
KEEP = 2
STAMP = ".imgsim-complete"


def python312() -> Path | None:
    """pyenv's Python 3.12 (MWAA 3.3.1's Python), or one on PATH; None where there is none."""
    root = os.environ.get("PYENV_ROOT") or str(Path.home() / ".pyenv")
    for candidate in sorted(Path(root).glob(f"versions/{MWAA_PYTHON}.*/bin/python{MWAA_PYTHON}")):
        return candidate
    found = shutil.which(f"python{MWAA_PYTHON}")
    return Path(found) if found else None


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "imgsim"


def digest(python: Path, requirements: str) -> str:
    """What decides the venv: the interpreter, MWAA's constraints and packages, the bundle's
    requirements."""
    version = subprocess.run(
        [str(python), "--version"], capture_output=True, text=True, check=True
    ).stdout
    parts = [
        version,
        AIRFLOW_CONSTRAINTS.read_text(),
        ESSENTIAL_CONSTRAINTS.read_text(),
        "\n".join(IMAGE_PACKAGES),
        requirements,
    ]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


def _safe_pip_install(venv: Path, *args: str, log: Path) -> None:
    """MWAA's safe-pip-install: pip with its essential constraints always applied."""
    command = [
        str(venv / "bin" / "python"),
        "-m",
        "pip",
        "install",
        "--disable-pip-version-check",
        "--constraint",
        str(ESSENTIAL_CONSTRAINTS),
        *args,
    ]
    with log.open("a") as out:
        out.write(f"$ {' '.join(command)}\n")
        out.flush()
        result = subprocess.run(
            command, stdout=out, stderr=subprocess.STDOUT, timeout=BUILD_TIMEOUT_SECONDS
        )
    if result.returncode != 0:
        tail = log.read_text()[-4000:]
        raise RuntimeError(f"MWAA's install failed (pip exit {result.returncode}):\n{tail}")


def build(venv: Path, python: Path, requirements: Path, log: Path) -> None:
    """The image's packages under MWAA's constraints, then the requirements as the entrypoint
    installs them."""
    subprocess.run([str(python), "-m", "venv", str(venv)], check=True, timeout=300)
    # the image upgrades pip (bootstrap/01-root-firstpass/002-install-python.sh)
    _safe_pip_install(venv, "--upgrade", "pip", log=log)
    _safe_pip_install(venv, "-c", str(AIRFLOW_CONSTRAINTS), *IMAGE_PACKAGES, log=log)
    _safe_pip_install(venv, "-r", str(requirements), "-c", str(AIRFLOW_CONSTRAINTS), log=log)


def mwaa_venv(python: Path, requirements: Path) -> Path:
    """The cached venv for these requirements, built (under a lock) when missing."""
    root = cache_dir()
    root.mkdir(parents=True, exist_ok=True)
    venv = root / f"mwaa-venv-{digest(python, requirements.read_text())}"
    stamp = venv / STAMP
    with (root / f"{venv.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not stamp.exists():
            shutil.rmtree(venv, ignore_errors=True)  # an interrupted build
            log = root / f"{venv.name}.log"
            log.write_text("")
            build(venv, python, requirements, log)
            stamp.write_text(requirements.read_text())
        stamp.touch()
    _prune(root)
    return venv


def _prune(root: Path) -> None:
    """Remove all but the KEEP most recently used venvs; one being built (locked) stays."""
    built = [p for p in root.glob("mwaa-venv-*") if (p / STAMP).exists()]
    built.sort(key=lambda p: (p / STAMP).stat().st_mtime, reverse=True)
    for old in built[KEEP:]:
        with (root / f"{old.name}.lock").open("w") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue
            shutil.rmtree(old, ignore_errors=True)
            (root / f"{old.name}.log").unlink(missing_ok=True)
