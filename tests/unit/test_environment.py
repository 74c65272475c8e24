"""The ML stack this project relies on: CPU torch, and none of the packages that replace it."""

import importlib.metadata as md
import importlib.util

import pytest


def test_torch_is_the_cpu_build():
    import torch

    assert torch.__version__.startswith("2.13.0")
    assert "+cpu" in torch.__version__ or not torch.backends.cuda.is_built()
    assert torch.version.cuda is None


@pytest.mark.parametrize("name", ["torchvision", "open_clip", "timm"])
def test_packages_that_pull_a_cuda_torch_are_absent(name):
    assert importlib.util.find_spec(name) is None
    dist = {"open_clip": "open_clip_torch"}.get(name, name)
    with pytest.raises(md.PackageNotFoundError):
        md.version(dist)


def test_transformers_clip_imports_beside_cpu_torch():
    from transformers import CLIPModel  # noqa: F401 - the import is the test
