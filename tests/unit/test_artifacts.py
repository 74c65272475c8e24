"""Named model artifacts built once into a cache, also when two stacks come up at once."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from sagemaker_jobs.artifacts import cached_artifact


def test_builders_racing_for_one_artifact_each_finish_with_the_same_whole_file(tmp_path):
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: cached_artifact("color-layout-v1", tmp_path), range(4)))
    assert {model_id for _, model_id in results} == {"color-layout-v1"}
    [path] = {path for path, _ in results}
    assert path.exists() and path.name.endswith(".tar.gz")
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no partial file left behind
    assert cached_artifact("color-layout-v1", tmp_path) == (path, "color-layout-v1")  # cached
