"""The index's build and search settings are checked against pgvector's limits before they
reach the database, each refusal naming the variable to fix."""

from __future__ import annotations

from dataclasses import replace

import pytest

from pipeline.settings import Settings
from pipeline.storage.vector_index import build_settings, ef_search


def test_the_defaults_pass() -> None:
    settings = Settings()
    assert build_settings(settings) == (16, 128, "2GB")
    assert ef_search(settings) == 400


@pytest.mark.parametrize(
    ("change", "variable"),
    [
        ({"vector_index_m": 1}, "IMGSIM_VECTOR_INDEX_M"),
        ({"vector_index_m": 101}, "IMGSIM_VECTOR_INDEX_M"),
        ({"vector_index_m": 32, "vector_index_ef_construction": 63}, "EF_CONSTRUCTION"),
        ({"vector_index_ef_construction": 1001}, "EF_CONSTRUCTION"),
        ({"vector_index_build_memory": "2 GB; DROP TABLE x"}, "BUILD_MEMORY"),
    ],
)
def test_a_build_setting_out_of_range_is_refused(change: dict, variable: str) -> None:
    with pytest.raises(ValueError, match=variable):
        build_settings(replace(Settings(), **change))


def test_a_denser_graph_passes() -> None:
    settings = replace(Settings(), vector_index_m=32, vector_index_ef_construction=200)
    assert build_settings(settings)[:2] == (32, 200)


@pytest.mark.parametrize("value", [0, 1001])
def test_an_ef_search_out_of_range_is_refused(value: int) -> None:
    with pytest.raises(ValueError, match="IMGSIM_VECTOR_INDEX_EF_SEARCH"):
        ef_search(replace(Settings(), vector_index_ef_search=value))
