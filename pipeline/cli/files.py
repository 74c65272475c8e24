"""Which files an upload sends: named files as given, folders searched for images."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from pipeline.cli.errors import USAGE, CliError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def collect_files(paths: Iterable[Path]) -> list[Path]:
    """A named file is sent whatever its name (the API refuses a non-image with the reason);
    a folder contributes its image files, recursively, in name order."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files += sorted(
                p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
            )
        elif path.is_file():
            files.append(path)
        else:
            raise CliError(f"{path}: no such file or folder", USAGE)
    if not files:
        raise CliError(f"no image files ({' '.join(IMAGE_SUFFIXES)}) under the given paths", USAGE)
    return list(dict.fromkeys(files))
