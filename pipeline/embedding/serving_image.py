"""The serving container of the embedding model (batch transform and endpoint): which image,
and how many model-server workers it runs. The image's version is written here only: the
transform config, the MWAA bundle's image lookup, the artifact builder (wheels for the image's
Python and platform) and the template's test read it from `SERVING_IMAGE`."""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class ServingImage:
    repository: str
    framework_version: str  # the image's PyTorch, as sagemaker-core's image_uris takes it
    python: str  # the Python tag of the image, e.g. "py312"
    glibc_minor: int  # its OS's glibc 2.x (Ubuntu 22.04: 2.35): the manylinux wheels it runs
    arch: str
    end_of_patch: str  # the DLC support table's end-of-patch date (documented, never tested)

    @property
    def python_version(self) -> str:
        """ "3.12" for "py312": what `pip download --python-version` takes."""
        return f"{self.python[2]}.{self.python[3:]}"

    @property
    def platforms(self) -> list[str]:
        """The wheel platform tags the image runs, newest first (pip's --platform takes each
        one it may pick: it widens no manylinux_2_x tag to the older ones itself)."""
        minors = range(self.glibc_minor, 4, -1)
        return [f"manylinux_2_{minor}_{self.arch}" for minor in minors] + [
            f"manylinux2014_{self.arch}",
            f"manylinux2010_{self.arch}",
            f"manylinux1_{self.arch}",
        ]

    def tag(self, processor: str) -> str:
        """The image's short tag for "cpu" or "gpu", e.g. 2.6-cpu-py312."""
        return f"{self.framework_version}-{processor}-{self.python}"


# The SageMaker PyTorch inference DLC 2.6 (Python 3.12, Ubuntu 22.04; TorchServe and the
# sagemaker-pytorch-inference toolkit). Its patch support ended on 2026-06-30 (the DLC support
# table), and it is still the newest PyTorch inference DLC: the DLC repository's newer PyTorch
# images (2.11-2.13, Amazon Linux 2023) are SageMaker Training images, with neither TorchServe
# nor the inference toolkit, and the Hugging Face PyTorch inference image publishes no
# end-of-patch date and is built on the same PyTorch 2.6. Move when a newer PyTorch inference
# DLC is published (docs/deploy.md, "The serving image").
SERVING_IMAGE = ServingImage(
    repository="pytorch-inference",
    framework_version="2.6",
    python="py312",
    glibc_minor=35,
    arch="x86_64",
    end_of_patch="2026-06-30",
)

# GPUs of the SageMaker GPU instance types by family and size; a size not named has one GPU.
# (SageMaker's instance type tables: g4dn/g5/g6/g6e 12xlarge and 24xlarge have 4, 48xlarge 8;
# p3 8xlarge 4, 16xlarge and p3dn 8; every p4 and p5 size 8.)
_MULTI_GPU = {
    "g4dn": {"12xlarge": 4},
    "g5": {"12xlarge": 4, "24xlarge": 4, "48xlarge": 8},
    "g6": {"12xlarge": 4, "24xlarge": 4, "48xlarge": 8},
    "g6e": {"12xlarge": 4, "24xlarge": 4, "48xlarge": 8},
    "p3": {"8xlarge": 4, "16xlarge": 8},
    "p3dn": {"24xlarge": 8},
}
_ALL_EIGHT = ("p4d", "p4de", "p5", "p5e", "p5en")
_INSTANCE_TYPE = re.compile(r"ml\.([a-z\d-]+)\.(\w+)")


def gpus(instance_type: str) -> int:
    """The GPUs of a SageMaker instance type: 0 for a CPU type (a family not starting with g
    or p, as sagemaker-core tells them)."""
    match = _INSTANCE_TYPE.fullmatch(instance_type)
    if not match:
        raise ValueError(f"{instance_type!r} is not a SageMaker instance type (ml.<family>.<size>)")
    family, size = match[1], match[2]
    if family[0] not in "gp":
        return 0
    if family in _ALL_EIGHT:
        return 8
    return _MULTI_GPU.get(family, {}).get(size, 1)


def model_server_workers(instance_type: str) -> int:
    """One model-server worker per GPU, one per instance on a CPU: each worker is a process
    with the model loaded and its own preparation threads (the handler's), so on a CPU a second
    worker only splits the same cores, and on a GPU each worker feeds the GPU TorchServe gives
    it (`gpu_id`)."""
    return max(1, gpus(instance_type))


def workers_environment(instance_type: str) -> dict[str, str]:
    """The toolkit's worker variables: setting any SAGEMAKER_TS_* variable makes it register the
    model with minWorkers and maxWorkers from these two (1 when unset), so both are set."""
    workers = str(model_server_workers(instance_type))
    return {"SAGEMAKER_TS_MIN_WORKERS": workers, "SAGEMAKER_TS_MAX_WORKERS": workers}


# The endpoint embeds one image per request: its preparation stays in the handler's threads, so
# no pool of preparation processes (one per core) idles beside each model-server worker.
ENDPOINT_ENVIRONMENT = {"IMGSIM_PREPARATION": "threads"}
