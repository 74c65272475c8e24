"""Model artifacts: named ones built once into a cache (also when two stacks come up at once),
and every family's serving requirements installable from the artifact alone."""

from __future__ import annotations

import tarfile
from concurrent.futures import ThreadPoolExecutor

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from pipeline.embedding.serving_image import SERVING_IMAGE
from pipeline.local.sagemaker.requirements import (
    NotSelfContained,
    check_offline_install,
    image_python,
)
from sagemaker_jobs.artifacts import cached_artifact
from sagemaker_jobs.build_model import REQUIREMENTS, pack
from sagemaker_jobs.wheels import CONSTRAINTS, pinned, requirements_txt, wheelhouse


def test_builders_racing_for_one_artifact_each_finish_with_the_same_whole_file(tmp_path):
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: cached_artifact("color-layout-v1", tmp_path), range(4)))
    assert {model_id for _, model_id in results} == {"color-layout-v1"}
    [path] = {path for path, _ in results}
    assert path.exists() and path.name.endswith(".tar.gz")
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no partial file left behind
    assert cached_artifact("color-layout-v1", tmp_path) == (path, "color-layout-v1")  # cached


def _constraint_pins() -> dict[str, str]:
    pins = {}
    for line in CONSTRAINTS.read_text().splitlines():
        name, sep, version = line.partition("==")
        if sep:
            pins[canonicalize_name(name)] = version.strip()
    return pins


def _code_dir(tmp_path, family):
    """code/ as `pack` writes it: requirements.txt and the family's wheels beside it."""
    code = tmp_path / "code"
    code.mkdir()
    wheel_dir = wheelhouse(REQUIREMENTS[family])
    (code / "wheels").symlink_to(wheel_dir)
    text = requirements_txt(family, pinned(REQUIREMENTS[family], wheel_dir))
    (code / "requirements.txt").write_text(text)
    return code


@pytest.mark.parametrize("family", sorted(REQUIREMENTS))
def test_each_family_s_requirements_install_from_the_artifact_alone(tmp_path, family):
    """What the serving container's `pip install -r code/requirements.txt` needs is in the
    artifact: resolved with no index, for the serving image's Python and platform."""
    code = _code_dir(tmp_path, family)
    lines = [
        line
        for line in (code / "requirements.txt").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    assert lines[:2] == ["--no-index", "--find-links wheels"]
    pins = _constraint_pins()
    for line in lines[2:]:  # the family's packages at the versions the suite runs
        name, _, version = line.partition("==")
        assert pins[name] == version, line
    assert {canonicalize_name(Requirement(r).name) for r in REQUIREMENTS[family]} == {
        line.partition("==")[0] for line in lines[2:]
    }
    wheels = sorted(p.name for p in (code / "wheels").iterdir())
    assert wheels and all(name.endswith(".whl") for name in wheels)
    assert not any(name.startswith(("torch-", "boto3-", "botocore-")) for name in wheels)
    check_offline_install(code, f"x/pytorch-inference:{SERVING_IMAGE.tag('cpu')}")


def test_the_artifact_carries_the_requirements_and_wheels_under_code(tmp_path):
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "imgsim_model.json").write_text("{}")
    with tarfile.open(pack(model_dir, tmp_path / "model.tar.gz", "color-layout")) as tar:
        names = tar.getnames()
        requirements = tar.extractfile("code/requirements.txt").read().decode()  # type: ignore[union-attr]
    assert requirements == (_code_dir(tmp_path, "color-layout") / "requirements.txt").read_text()
    wheels = {
        name.removeprefix("code/wheels/") for name in names if name.startswith("code/wheels/")
    }
    assert wheels == {p.name for p in wheelhouse(REQUIREMENTS["color-layout"]).glob("*.whl")}
    assert {"imgsim_model.json", "code/inference.py", "code/embedders.py"} <= set(names)


def test_requirements_that_need_an_index_are_refused_with_pip_s_reason(tmp_path):
    (tmp_path / "requirements.txt").write_text("pillow>=13,<14\n")
    with pytest.raises(NotSelfContained, match=r"EnableNetworkIsolation.*pillow"):
        check_offline_install(tmp_path)
    # a find-links URL is the network too: only the artifact's own files count
    (tmp_path / "requirements.txt").write_text(
        "--find-links https://download.pytorch.org/whl/cpu\npillow\n"
    )
    with pytest.raises(NotSelfContained):
        check_offline_install(tmp_path)


def test_the_image_s_python_comes_from_its_tag():
    assert image_python("1.dkr.ecr.us-east-1.amazonaws.com/pytorch-inference:2.6-gpu-py312") == (
        "3.12"
    )
    assert image_python("x/pytorch-inference:2.10.0-cpu-py313-ubuntu22.04-sagemaker") == "3.13"
    assert image_python("local") == SERVING_IMAGE.python_version
