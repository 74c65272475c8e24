"""The test tiers are markers tests/conftest.py gives by folder and by fixture: a test that
needs servers or a model is out of `make unit` without marking it by hand, and the middle tier
(`make integration`) leaves Airflow, the browser and the whole stack out."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TIERS = ("stack", "model", "airflow", "browser", "e2e", "mwaa", "package")
UNIT = "not (stack or model)"
MIDDLE = "(stack or model) and not (airflow or browser or e2e or mwaa or package)"
PROBE = """
import json

def pytest_collection_finish(session):
    for item in session.items:
        print("MARKS " + json.dumps([item.nodeid, sorted({m.name for m in item.iter_markers()})]))
"""


def _markers(tmp_path: Path, *paths: str) -> dict[str, set[str]]:
    (tmp_path / "tiers_probe.py").write_text(PROBE)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}
    argv = [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"]
    result = subprocess.run(
        [*argv, "-p", "tiers_probe", *paths],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    lines = [json.loads(line[6:]) for line in result.stdout.splitlines() if line[:6] == "MARKS "]
    return {node: set(names) & set(TIERS) for node, names in lines}


def _selected(expression: str, markers: set[str]) -> bool:
    """A -m expression of the tier markers, evaluated as pytest does (and, or, not, names)."""
    return bool(eval(expression, {"__builtins__": {}}, {m: m in markers for m in TIERS}))


def test_each_test_lands_in_its_tier(tmp_path):
    found = _markers(
        tmp_path,
        "tests/unit/test_polling.py",
        "tests/unit/test_demo_photos.py",
        "tests/integration/test_bedrock_emulator.py",
        "tests/dags/test_reembed.py",
        "tests/browser/test_gallery.py",
    )
    by_file: dict[str, set[str]] = {}
    for node, markers in found.items():
        by_file.setdefault(node.split("::")[0], set()).update(markers)
    assert by_file["tests/unit/test_polling.py"] == set()
    assert by_file["tests/integration/test_bedrock_emulator.py"] == {"stack"}
    assert by_file["tests/dags/test_reembed.py"] >= {"stack", "airflow", "model"}
    assert by_file["tests/browser/test_gallery.py"] >= {"stack", "browser"}
    # by fixture: the demo photos' ranking builds the EfficientNet artifact, its printing not
    demo = {n.split("::")[1]: m for n, m in found.items() if "test_demo_photos" in n}
    assert demo["test_the_other_views_of_every_subject_rank_first"] == {"model"}
    assert demo["test_the_printed_ranking_marks_the_subject_and_elides_the_middle"] == set()

    unit = {n for n, m in found.items() if _selected(UNIT, m)}
    assert {n.split("::")[0] for n in unit} == {
        "tests/unit/test_polling.py",
        "tests/unit/test_demo_photos.py",
    }
    assert not any("rank_first" in n for n in unit)
    middle = {n.split("::")[0] for n, m in found.items() if _selected(MIDDLE, m)}
    assert middle == {
        "tests/integration/test_bedrock_emulator.py",
        "tests/unit/test_demo_photos.py",
    }


def test_the_makefile_runs_the_tiers_by_these_markers():
    makefile = (ROOT / "Makefile").read_text()
    assert f'-m "{UNIT}"' in makefile and f'-m "{MIDDLE}"' in makefile
