"""The Lambda code package (pipeline/ and lambdas/, both functions' code) and the dependencies
layer: installed for the functions' runtime, stripped of what the handlers never load, and
measured against Lambda's unzipped limit.

`pip install -t` of the dependencies is over the 250 MB Lambda allows a function and its
layers together (pyarrow and numpy are most of it; sizes in docs/performance.md). What goes:

- pyarrow's Flight (libarrow_flight and its Python bindings), its remote filesystems
  (libarrow_s3 and the S3/GCS/Azure/HDFS modules; `pyarrow.fs` imports them inside
  `try/except ImportError`), ORC, the Substrait bindings and the C++ test module: shards are
  read with GetObject and parsed from memory (`pipeline/storage/shards.py`). libarrow_substrait,
  libarrow_dataset and libarrow_acero stay: `pyarrow.lib` links them (DT_NEEDED);
- headers, Cython sources, tests, type stubs, numpy's f2py, console scripts, and the
  `__pycache__` pip compiles for the interpreter running pip (not the runtime's);
- the copies pip makes of each symlinked `.so` chain (`libarrow_python.so`,
  `.so.2600`, `.so.2600.1.0`): the loader only asks for the SONAME, so one copy under that
  name stays.

tests/integration/test_lambda_package.py runs both handlers from the unpacked artifacts.
`imgsim build lambda` writes both zips into build/ (`make package`).
"""

from __future__ import annotations

import fnmatch
import hashlib
import io
import os
import shutil
import struct
import subprocess
import sys
import zipfile
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.aws_build import REPO_ROOT

RUNTIME_PYTHON = "3.12"  # infra/template.yaml: Runtime python3.12, x86_64
# The runtime is Amazon Linux 2023 (glibc 2.34): manylinux_2_28 wheels run there, and pillow 13
# and pyarrow 26 publish no manylinux2014 wheel for it.
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux2014_x86_64")
# boto3 is in the runtime, but at the runtime's version: the code writes with S3 conditions
# (IfMatch on PutObject), newer than some runtime SDKs, and the suite passed with the pinned one.
REQUIREMENTS = (
    "aws-lambda-powertools",
    "pydantic",
    "pillow",
    "numpy",
    "pyarrow",
    "requests",
    "boto3",
)
CONSTRAINTS = REPO_ROOT / "constraints.txt"
LAMBDA_UNZIPPED_LIMIT = 262_144_000  # 250 MiB: function code and all its layers, unzipped

# Paths (relative to the layer's python/ folder, fnmatch patterns) the handlers never load.
NEVER_IMPORTED = (
    # pyarrow: Flight, remote filesystems, ORC, Substrait bindings, C++ tests
    "pyarrow/*flight*",
    "pyarrow/libarrow_s3.so*",
    "pyarrow/_s3fs.*",
    "pyarrow/_gcsfs.*",
    "pyarrow/_azurefs.*",
    "pyarrow/_hdfs.*",
    "pyarrow/*orc*",
    "pyarrow/*substrait*.py",
    "pyarrow/_substrait.*",
    "pyarrow/_pyarrow_cpp_tests.*",
    "pyarrow/include",
    "pyarrow/src",
    "pyarrow/tests",
    "pyarrow/benchmark.py",
    "pyarrow/cffi.py",
    "pyarrow/interchange",
    # numpy: the Fortran wrapper generator
    "numpy/f2py",
    # anywhere: tests, sources, headers, stubs, caches of another interpreter, scripts
    "*/tests",
    "*/__pycache__",
    "*.pyx",
    "*.pxd",
    "*.pxi",
    "*.h",
    "*.hpp",
    "*.cc",
    "*.cpp",
    "*.pyi",
    "bin",
)
# libarrow_substrait is kept: pyarrow.lib links it. Guard against a pattern that would match it.
KEEP = ("pyarrow/libarrow_substrait.so*",)


@dataclass
class StripReport:
    removed: list[str] = field(default_factory=list)
    deduplicated: list[str] = field(default_factory=list)
    bytes_before: int = 0
    bytes_after: int = 0


def pip(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", *args], check=True)


def _platform_args(python_version: str) -> list[str]:
    args = ["--only-binary=:all:", "--implementation", "cp", "--python-version", python_version]
    for platform in PLATFORMS:
        args += ["--platform", platform]
    return args


def download(wheels: Path, python_version: str = RUNTIME_PYTHON) -> Path:
    """The wheels of the layer for the runtime's interpreter and platform, pinned by
    constraints.txt (what the suite passed with)."""
    wheels.mkdir(parents=True, exist_ok=True)
    pip(
        "download",
        "--quiet",
        *_platform_args(python_version),
        "-c",
        str(CONSTRAINTS),
        "-d",
        str(wheels),
        *REQUIREMENTS,
    )
    return wheels


def install(wheels: Path, site: Path, python_version: str = RUNTIME_PYTHON) -> Path:
    """`pip install -t site` from the downloaded wheels only."""
    if site.exists():
        shutil.rmtree(site)
    pip(
        "install",
        "--quiet",
        "--no-index",
        "--no-compile",
        "--find-links",
        str(wheels),
        *_platform_args(python_version),
        "-c",
        str(CONSTRAINTS),
        "-t",
        str(site),
        *REQUIREMENTS,
    )
    return site


def tree_size(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and not p.is_symlink())


def _matches(relative: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatch(relative, p) for p in patterns)


def strip(site: Path) -> StripReport:
    """Remove NEVER_IMPORTED from a pip-installed site folder, then the symlink copies."""
    report = StripReport(bytes_before=tree_size(site))
    for path in sorted(site.rglob("*"), key=lambda p: len(p.parts)):
        if not os.path.lexists(path):
            continue  # inside a folder removed already
        relative = path.relative_to(site).as_posix()
        if _matches(relative, NEVER_IMPORTED) and not _matches(relative, KEEP):
            shutil.rmtree(path) if path.is_dir() else path.unlink()
            report.removed.append(relative)
    report.deduplicated = deduplicate_shared_objects(site)
    report.bytes_after = tree_size(site)
    return report


def deduplicate_shared_objects(site: Path) -> list[str]:
    """Keep one copy of each `.so` that pip copied under several names of its symlink chain:
    the one named by its SONAME, the only name the loader asks for. Returns what went."""
    groups: dict[tuple[Path, str], list[Path]] = defaultdict(list)
    for path in site.rglob("*.so*"):
        if path.is_file() and not path.is_symlink():
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            groups[path.parent, digest].append(path)
    removed = []
    for copies in groups.values():
        if len(copies) < 2:
            continue
        soname = elf_dynamic(copies[0]).soname
        if soname is None or soname not in {c.name for c in copies}:
            continue
        for copy in copies:
            if copy.name != soname:
                copy.unlink()
                removed.append(copy.relative_to(site).as_posix())
    return sorted(removed)


@dataclass(frozen=True)
class ElfDynamic:
    soname: str | None
    needed: tuple[str, ...]


def elf_dynamic(path: Path) -> ElfDynamic:
    """DT_SONAME and DT_NEEDED of a 64-bit little-endian ELF file (what the loader reads)."""
    data = path.read_bytes()
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise ValueError(f"{path}: not a 64-bit little-endian ELF file")
    shoff, shentsize, shnum = (
        struct.unpack_from("<Q", data, 0x28)[0],
        *struct.unpack_from("<HH", data, 0x3A),
    )
    sections = [
        struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)
    ]
    soname, needed = None, []
    for _name, kind, _flags, _addr, offset, size, link, *_ in sections:
        if kind != 6:  # SHT_DYNAMIC
            continue
        strtab = sections[link][4]
        for entry in range(offset, offset + size, 16):
            tag, value = struct.unpack_from("<qQ", data, entry)
            if tag == 0:
                break
            if tag in (1, 14):  # DT_NEEDED, DT_SONAME
                end = data.index(b"\0", strtab + value)
                name = data[strtab + value : end].decode()
                if tag == 1:
                    needed.append(name)
                else:
                    soname = name
    return ElfDynamic(soname, tuple(needed))


def compile_for(site: Path, interpreter: str) -> None:
    """Bytecode for the runtime's interpreter: /opt is read-only on Lambda, so without it every
    cold start compiles every module it imports. unchecked-hash: valid whatever the mtimes."""
    subprocess.run(
        [
            interpreter,
            "-m",
            "compileall",
            "-q",
            "-j",
            "0",
            "--invalidation-mode",
            "unchecked-hash",
            str(site),
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )


def zip_tree(root: Path, archive_path: Path) -> Path:
    """Zip root's content (for a layer: root holds python/) in a stable order."""
    archive_path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(archive_path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for path in sorted(root.rglob("*")):
            if path.is_file():
                archive.write(path, path.relative_to(root).as_posix())
    return archive_path


def unzipped_size(archive_path: Path) -> int:
    """What Lambda counts against its limit: the sum of the files' uncompressed sizes."""
    with zipfile.ZipFile(archive_path) as archive:
        return sum(info.file_size for info in archive.infolist())


def find_interpreter(version: str = RUNTIME_PYTHON) -> str | None:
    """An interpreter of the runtime's version on this machine (pyenv, then PATH), if any."""
    if f"{sys.version_info.major}.{sys.version_info.minor}" == version:
        return sys.executable
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    candidates = sorted(pyenv.glob(f"{version}.*/bin/python{version}")) if pyenv.is_dir() else []
    on_path = shutil.which(f"python{version}")
    for candidate in [*reversed([str(c) for c in candidates]), *([on_path] if on_path else [])]:
        probe = subprocess.run([candidate, "-c", "pass"], capture_output=True, check=False)
        if probe.returncode == 0:
            return candidate
    return None


def build_layer(
    work: Path,
    out: Path,
    python_version: str = RUNTIME_PYTHON,
    wheels: Path | None = None,
    interpreter: str | None = None,
) -> tuple[Path, StripReport]:
    """Download (unless `wheels` holds them already), install, strip, compile, zip."""
    wheels = wheels or work / f"wheels-{python_version}"
    if not any(wheels.glob("pyarrow-*.whl")):
        download(wheels, python_version)
    root = work / f"layer-{python_version}"
    site = install(wheels, root / "python", python_version)
    report = strip(site)
    interpreter = interpreter or find_interpreter(python_version)
    if interpreter:
        compile_for(site, interpreter)
    return zip_tree(root, out), report


PACKAGED = (".py", ".html", ".js", ".css")  # code, and the gallery's static files
NOT_PACKAGED = ("local", "aws_build")  # the local stack and these build tools never run in Lambda


def lambda_package(root: Path = REPO_ROOT) -> bytes:
    """The code package of both functions: pipeline/ and lambdas/ with their package data (the
    gallery page's files); dependencies are a layer."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for package in ("pipeline", "lambdas"):
            for path in sorted((root / package).rglob("*")):
                parts = path.relative_to(root).parts
                if path.suffix in PACKAGED and not set(NOT_PACKAGED) & set(parts):
                    archive.write(path, path.relative_to(root).as_posix())
    return buffer.getvalue()


def build_code(work: Path, out: Path, interpreter: str | None = None) -> Path:
    """The code package (`lambda_package`) with bytecode for the runtime's interpreter, as
    the layer has: /var/task is read-only too, and compiling the 60 modules the API imports
    cost every cold start (docs/performance.md)."""
    root = work / "code"
    shutil.rmtree(root, ignore_errors=True)
    with zipfile.ZipFile(io.BytesIO(lambda_package())) as archive:
        archive.extractall(root)
    interpreter = interpreter or find_interpreter()
    if interpreter:
        compile_for(root, interpreter)
    return zip_tree(root, out)


@dataclass(frozen=True)
class Built:
    """Both zips, with what each takes unzipped and zipped, and what stripping the layer saved."""

    sizes: dict[Path, tuple[int, int]]
    report: StripReport
    bytecode: bool

    @property
    def unzipped(self) -> int:
        return sum(unzipped for unzipped, _ in self.sizes.values())

    @property
    def fits(self) -> bool:
        return self.unzipped < LAMBDA_UNZIPPED_LIMIT


def build(out: Path) -> Built:
    """Write out/imgsim.zip (the code) and out/imgsim-deps-layer.zip (the layer)."""
    out.mkdir(parents=True, exist_ok=True)
    code = build_code(out / "code-work", out / "imgsim.zip")
    layer, report = build_layer(out / "layer-work", out / "imgsim-deps-layer.zip")
    sizes = {path: (unzipped_size(path), path.stat().st_size) for path in (code, layer)}
    return Built(sizes, report, find_interpreter() is not None)
