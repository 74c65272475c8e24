"""Model artifacts: download model.tar.gz once, unpack it, and load its code/inference.py
through the four SageMaker functions (after checking, for a model with network isolation, that
its requirements install without an index: `requirements`)."""

from __future__ import annotations

import hashlib
import importlib
import sys
import tarfile
import threading
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.local.sagemaker.payloads import split_s3_uri
from pipeline.local.sagemaker.requirements import check_offline_install

HANDLERS = ("model_fn", "input_fn", "predict_fn", "output_fn")


@dataclass
class LoadedModel:
    """A model as a serving container holds it: the handler module and model_fn's result."""

    module: types.ModuleType
    model: Any

    def invoke(self, body: bytes, content_type: str, accept: str) -> bytes:
        data = self.module.input_fn(body, content_type)
        prediction = self.module.predict_fn(data, self.model)
        out = self.module.output_fn(prediction, accept)
        return out.encode("utf-8") if isinstance(out, str) else bytes(out)


class ModelCache:
    """One unpacked, loaded model per ModelDataUrl + ETag, shared by jobs and endpoints."""

    def __init__(self, s3: Any, work_dir: Path) -> None:
        self._s3 = s3
        self._work = work_dir
        self._lock = threading.Lock()
        self._loaded: dict[tuple[str, bool], LoadedModel] = {}

    def load(self, model_data_url: str, isolated: bool = False, image_uri: str = "") -> LoadedModel:
        """The model, loaded once; `isolated` (the model's EnableNetworkIsolation) first checks
        that its code/requirements.txt installs without an index on `image_uri`."""
        bucket, key = split_s3_uri(model_data_url)
        etag = self._s3.head_object(Bucket=bucket, Key=key)["ETag"].strip('"')
        cache_key = hashlib.sha256(f"{model_data_url}|{etag}".encode()).hexdigest()[:16]
        with self._lock:
            if (cache_key, isolated) not in self._loaded:
                loaded = self._load(bucket, key, cache_key, image_uri if isolated else None)
                self._loaded[cache_key, isolated] = loaded
            return self._loaded[cache_key, isolated]

    def _load(
        self, bucket: str, key: str, cache_key: str, isolated_image: str | None
    ) -> LoadedModel:
        model_dir = self._work / cache_key
        if not (model_dir / "code" / "inference.py").exists():
            model_dir.mkdir(parents=True, exist_ok=True)
            archive = model_dir.with_suffix(".tar.gz")
            self._s3.download_file(bucket, key, str(archive))
            with tarfile.open(archive) as tar:
                tar.extractall(model_dir, filter="data")
            archive.unlink()
        if isolated_image is not None:
            check_offline_install(model_dir / "code", isolated_image)
        module = import_handler(model_dir / "code", f"imgsim_sm_model_{cache_key}")
        missing = [name for name in HANDLERS if not hasattr(module, name)]
        if missing:
            raise RuntimeError(f"code/inference.py lacks {', '.join(missing)}")
        return LoadedModel(module=module, model=module.model_fn(str(model_dir)))


def import_handler(code_dir: Path, package: str) -> types.ModuleType:
    """Import code/inference.py as `<package>.inference`, so two models' code never clash
    (the code's sibling imports resolve inside the package)."""
    if package not in sys.modules:
        module = types.ModuleType(package)
        module.__path__ = [str(code_dir)]
        sys.modules[package] = module
    return importlib.import_module(f"{package}.inference")
