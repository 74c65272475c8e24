"""Every DAG in dags/ says in its doc_md (shown on its page in the Airflow UI) what it does and
what to do when it fails. Each test imports the DAG files afresh (tests/conftest.py): the first
test imports one under an environment in which it defines no DAG, as DAG-run tests do."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

DAGS = Path(__file__).parents[2] / "dags"


def test_a_campaign_folder_without_campaigns_defines_no_dag(monkeypatch, tmp_path):
    from airflow.sdk import DAG

    monkeypatch.setenv("IMGSIM_CAMPAIGNS_DIR", str(tmp_path))
    module = importlib.import_module("dags.generate_campaign")
    assert tmp_path == module.CAMPAIGNS_DIR
    assert not [d for d in vars(module).values() if isinstance(d, DAG)]


@pytest.mark.parametrize("module", sorted(p.stem for p in DAGS.glob("*.py")))
def test_each_dag_documents_what_to_do_when_it_fails(module, monkeypatch):
    from airflow.sdk import DAG

    monkeypatch.setenv("IMGSIM_EMBED_QUEUE_URL", "http://127.0.0.1:9/000000000000/embed")
    dags = [
        d for d in vars(importlib.import_module(f"dags.{module}")).values() if isinstance(d, DAG)
    ]
    assert dags, f"dags/{module}.py defines no DAG"
    for dag in dags:
        assert dag.doc_md and "When it fails" in dag.doc_md, dag.dag_id
