"""What `make demo` shows: over the shipped photos, ImageNet EfficientNet-Lite0 ranks the other
views of a photo's subject first, for every subject; and how the demo prints a ranking."""

from __future__ import annotations

import numpy as np

from pipeline.evaluate import in_process
from pipeline.evaluate.datasets import load_folder
from pipeline.local.demo import PHOTOS, model_note, view_lines
from pipeline.lookup.ranking import rank


def test_the_other_views_of_every_subject_rank_first(efficientnet_artifact, tmp_path):
    data = load_folder(PHOTOS)
    ids = [f"{label}-{i}" for i, label in enumerate(data.labels)]
    vectors = in_process.embed(in_process.load_model(efficientnet_artifact, tmp_path), data.images)
    subjects = sorted(set(data.labels))
    assert len(subjects) == 12 and len(data.images) == 96
    for subject in subjects:
        rows = [i for i, label in enumerate(data.labels) if label == subject]
        query = rows[0]
        ranked = rank(vectors, np.asarray(ids), vectors[query], 100, exclude=ids[query]).ids
        assert [r.rsplit("-", 1)[0] for r in ranked[:7]] == [subject] * 7, (subject, ranked[:9])


def test_the_printed_ranking_marks_the_subject_and_elides_the_middle():
    results = [
        {"image_id": f"{subject}-{i}", "similarity": 1 - n / 20}
        for n, (subject, i) in enumerate(
            [("cat", 1), ("cat", 2)] + [("rocket", i) for i in range(8)]
        )
    ]
    lines = view_lines("cat-0", results, head=3, tail=2)
    assert len(lines) == 6 and lines[3] == "  ... 5 more ..."
    assert lines[0].split() == ["1.", "cat-1", "similarity", "1.0000", "same", "subject"]
    assert lines[2].split()[:2] == ["3.", "rocket-0"] and "same" not in lines[2]
    assert lines[-1].split()[:2] == ["10.", "rocket-7"]


def test_the_model_is_named_for_what_it_is():
    assert "not CLIP" in model_note("efficientnet-lite0-imagenet")
    assert "not CLIP" in model_note("color-layout-v1")
    assert model_note("openai/clip-vit-base-patch32") == "openai/clip-vit-base-patch32"
