"""pgvector's text form of a vector reads back as the same float32 values, so a row and a query
are searched exactly as they were embedded (pgvector parses each element as a float32)."""

from __future__ import annotations

import numpy as np

from pipeline.storage.vector_index import vector_text


def test_every_float32_reads_back_exactly() -> None:
    rng = np.random.default_rng(3)
    values = np.concatenate(
        [
            rng.standard_normal(4096).astype(np.float32),
            rng.standard_normal(1024).astype(np.float32) * np.float32(1e-30),
            np.array([0.0, -0.0, 1.0, -1.0, 1e-45, 3.4028235e38], np.float32),
            # every exponent, with random mantissas
            np.frombuffer(
                (
                    rng.integers(0, 2**23, 254, dtype=np.uint32)
                    | (np.arange(1, 255, dtype=np.uint32) << 23)
                ).tobytes(),
                np.float32,
            ),
        ]
    )
    text = vector_text(values)
    assert text.startswith("[") and text.endswith("]")
    back = np.array([np.float32(x) for x in text[1:-1].split(",")], np.float32)
    assert np.array_equal(back.view(np.uint32), values.view(np.uint32))  # bit for bit, -0 too
