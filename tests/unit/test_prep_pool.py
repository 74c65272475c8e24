"""Preparation in worker processes (prep_pool): the same vectors as the threads, for each family,
handed to the model in place, and a pool that leaves nothing behind."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sagemaker_jobs.build_model import build
from sagemaker_jobs.image_embed.code import inference
from sagemaker_jobs.image_embed.code.batch import PrepareBytes, Request, embed_requests
from sagemaker_jobs.image_embed.code.prep_pool import PoolBroken, PreparationPool
from tests.polling import eventually

ROOT = Path(__file__).resolve().parents[2]

# Spawns the model server's preparation workers: the model tier, not `make unit`.
pytestmark = pytest.mark.model


def _photos(n: int) -> list[bytes]:
    out = []
    for i in range(n):
        image = Image.new("RGB", (90 + 13 * i, 70 + 5 * i), (25 * i % 256, 80, 200 - 9 * i))
        image.paste((255 - 20 * i, 30, 90), (8, 6, 30 + i, 40))
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG" if i % 2 else "PNG")
        out.append(buffer.getvalue())
    return out


def _unpack(artifact: Path, into: Path) -> str:
    with tarfile.open(artifact) as tar:
        tar.extractall(into, filter="data")
    return str(into)


def _requests(photos: list[bytes]) -> list[Request]:
    return [Request(image_id=str(i), data=p) for i, p in enumerate(photos)]


def _vectors(results: list[dict]) -> np.ndarray:
    return np.asarray([r["embedding"] for r in results if "embedding" in r], np.float32)


@pytest.fixture(scope="module")
def artifacts(tiny_clip_artifact, efficientnet_artifact, tmp_path_factory) -> dict[str, Path]:
    work = tmp_path_factory.mktemp("families")
    build(work / "onnx.tar.gz", random_config="tiny", seed=0, onnx="fp32")
    build(work / "color.tar.gz", family="color-layout-v1")
    return {
        "hf-clip": tiny_clip_artifact,
        "onnx-clip": work / "onnx.tar.gz",
        "efficientnet-lite0": efficientnet_artifact,
        "color-layout": work / "color.tar.gz",
    }


@pytest.mark.parametrize("family", ["hf-clip", "onnx-clip", "efficientnet-lite0", "color-layout"])
def test_processes_give_the_threads_vectors_and_a_bad_image_is_one_error_line(
    artifacts, family, tmp_path, monkeypatch
):
    monkeypatch.setenv("IMGSIM_BATCH_SIZE", "4")
    monkeypatch.delenv("IMGSIM_PREPARATION", raising=False)
    model = inference.model_fn(_unpack(artifacts[family], tmp_path))
    try:
        assert model.pool is not None and model.card["family"] == family  # the default
        photos = _photos(9)
        requests = [*_requests(photos[:3]), Request("bad", data=b"not an image")]
        requests += _requests(photos[3:])
        by_processes = inference.predict_fn(requests, model)
        by_threads = embed_requests(requests, model.embedder, model.fetch, 4, 2)
        assert [r["image_id"] for r in by_processes] == [r.image_id for r in requests]
        assert "cannot identify image" in by_processes[3]["error"]
        assert sum("embedding" in r for r in by_processes) == 9
        ours, theirs = _vectors(by_processes), _vectors(by_threads)
        assert ours.shape == theirs.shape and (ours * theirs).sum(axis=1).min() >= 0.999999
    finally:
        model.pool.close()


def test_the_gpu_hand_off_uint8_crops_through_the_pool_gives_the_float_path_vectors(
    tiny_clip_artifact, tmp_path, monkeypatch
):
    """On a GPU the workers write uint8 crops and torch normalises them on the device; the same
    code runs here on the CPU against the float path of today."""
    monkeypatch.setenv("IMGSIM_PREPARATION", "threads")
    model = inference.model_fn(_unpack(tiny_clip_artifact, tmp_path))
    embedder = model.embedder
    crop = embedder.preprocess.fast.resize_crop
    pool = PreparationPool(
        PrepareBytes(crop), crop(Image.new("RGB", (9, 9))), workers=2, capacity=4
    )
    try:
        assert pool.dtype == np.uint8 and pool.shape == (224, 224, 3)
        requests = _requests(_photos(6))
        crops = embed_requests(requests, embedder, model.fetch, pool=pool)
        floats = embed_requests(requests, embedder, model.fetch, batch_size=4, workers=2)
        assert (_vectors(crops) * _vectors(floats)).sum(axis=1).min() >= 0.999999
    finally:
        pool.close()


class _Spy:
    """An embedder that records the batches it is handed."""

    def __init__(self, embedder):
        self.embedder, self.model_id, self.batches = embedder, embedder.model_id, []

    def embed_prepared(self, batch):
        self.batches.append(batch)
        return self.embedder.embed_prepared(batch)

    def __getattr__(self, name):
        return getattr(self.embedder, name)


def test_the_model_reads_the_workers_buffers_in_place(tiny_clip_artifact, tmp_path, monkeypatch):
    monkeypatch.setenv("IMGSIM_BATCH_SIZE", "3")
    model = inference.model_fn(_unpack(tiny_clip_artifact, tmp_path))
    try:
        spy = _Spy(model.embedder)
        embed_requests(_requests(_photos(7)), spy, model.fetch, pool=model.pool)
        assert [len(b) for b in spy.batches] == [3, 3, 1]
        assert all(np.shares_memory(b, model.pool.buffers) for b in spy.batches)
        assert spy.batches[0].dtype == np.float32 and spy.batches[0].shape[1:] == (3, 224, 224)
    finally:
        model.pool.close()


def test_one_image_is_prepared_in_the_caller_and_threads_are_a_setting(
    tiny_clip_artifact, tmp_path, monkeypatch
):
    monkeypatch.setenv("IMGSIM_PREPARATION", "threads")
    assert inference.model_fn(_unpack(tiny_clip_artifact, tmp_path / "a")).pool is None
    monkeypatch.setenv("IMGSIM_PREPARATION", "forks")
    with pytest.raises(ValueError, match="IMGSIM_PREPARATION='forks'"):
        inference.model_fn(_unpack(tiny_clip_artifact, tmp_path / "b"))
    monkeypatch.delenv("IMGSIM_PREPARATION")
    model = inference.model_fn(_unpack(tiny_clip_artifact, tmp_path / "c"))
    try:
        spy = _Spy(model.embedder)
        model.embedder = spy
        [result] = inference.predict_fn(_requests(_photos(1)), model)
        assert result["embedding"] and not np.shares_memory(spy.batches[0], model.pool.buffers)
    finally:
        model.pool.close()


def test_process_workers_follow_the_cores_per_model_server_worker(monkeypatch):
    monkeypatch.setattr(inference.os, "sched_getaffinity", lambda _: set(range(48)), raising=False)
    monkeypatch.setenv("SAGEMAKER_TS_MAX_WORKERS", "4")
    assert inference.default_workers(processes=True) == 12  # no GIL: no cap of 8
    assert inference.default_workers() == 8
    monkeypatch.setenv("SAGEMAKER_TS_MAX_WORKERS", "1")
    monkeypatch.setattr(inference.os, "sched_getaffinity", lambda _: set(range(16)), raising=False)
    assert inference.default_workers(processes=True) == 16


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in state  # a zombie nobody reaped has exited


def _double(data: bytes) -> np.ndarray:
    if data == b"crash":
        os._exit(3)  # what a worker killed by the OOM killer looks like to the pool
    if data == b"bad":
        raise ValueError("bad bytes")
    return np.frombuffer(data, np.uint8).astype(np.float32) * 2


def _count(pool: PreparationPool, items: list[bytes]) -> list[tuple[list[float], dict]]:
    out = []
    for batch, errors in pool.batches(len(items), items.__getitem__):
        out.append((batch.sum(axis=1).tolist(), dict(errors)))
    return out


def test_close_leaves_no_process_and_no_segment():
    pool = PreparationPool(_double, np.zeros(4, np.float32), workers=2, capacity=3)
    pids, ring = pool.pids, pool.ring_path
    assert len(pids) == 2 and all(_alive(pid) for pid in pids)
    assert not os.path.exists(ring)  # unlinked once mapped: nothing named to leak
    items = [bytes([i] * 4) for i in range(5)] + [b"bad"]
    assert _count(pool, items) == [([0, 8, 16], {}), ([24, 32, 0], {2: "ValueError: bad bytes"})]
    pool.close()
    pool.close()
    assert not any(_alive(pid) for pid in pids) and not os.path.exists(ring)


def test_a_dead_worker_fails_the_call_and_the_next_call_restarts_the_pool():
    pool = PreparationPool(_double, np.zeros(4, np.float32), workers=2, capacity=2)
    try:
        with pytest.raises(PoolBroken, match="exited with code 3"):
            _count(pool, [b"crash", bytes(4)])
        assert _count(pool, [bytes([1] * 4)]) == [([8], {})]
        first = pool.pids
        os.kill(first[0], signal.SIGKILL)  # killed between calls: restarted before the next
        # (its other threads may outlive its main one a little)
        eventually(lambda: not pool.alive()[0], 30, 0.05, "the killed worker gone")
        assert _count(pool, [bytes([2] * 4)]) == [([16], {})]
        assert not set(first) & set(pool.pids)
    finally:
        pool.close()


@pytest.mark.parametrize(
    "end, returncode",
    [("os.kill(os.getpid(), signal.SIGKILL)", -signal.SIGKILL), ("sys.exit(0)", 0)],
)
def test_workers_leave_when_the_model_server_exits_or_is_killed(tmp_path, end, returncode):
    """No close(): a model server killed, or one that exits without closing its model."""
    script = (
        "import os, signal, sys\n"
        "import numpy as np\n"
        "from sagemaker_jobs.image_embed.code.prep_pool import PreparationPool\n"
        "from tests.unit.test_prep_pool import _double\n"
        "if __name__ == '__main__':\n"
        "    pool = PreparationPool(_double, np.zeros(4, np.float32), workers=2, capacity=2)\n"
        "    print(pool.ring_path, *pool.pids, flush=True)\n"
        f"    {end}\n"
    )
    (tmp_path / "server.py").write_text(script)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, str(tmp_path / "server.py")],
        env=env,
        text=True,
        capture_output=True,
        timeout=120,
    )
    assert done.returncode == returncode, done.stderr
    # (other tests' pools, in other xdist workers, come and go in /dev/shm: look at this one's)
    ring, *pids_out = done.stdout.split()
    assert not os.path.exists(ring)
    if returncode == 0:  # (after a kill, multiprocessing's tracker reclaims the queues' locks)
        assert "leaked" not in done.stderr, done.stderr
    pids = [int(pid) for pid in pids_out]
    assert len(pids) == 2
    eventually(lambda: not any(_alive(pid) for pid in pids), 30, 0.2, f"workers {pids} gone")


def test_the_ring_goes_to_the_temporary_directory_where_dev_shm_is_too_small(monkeypatch, tmp_path):
    from sagemaker_jobs.image_embed.code import prep_pool

    monkeypatch.setattr(prep_pool, "SHM_DIR", str(tmp_path / "no-shm"))  # no space there
    monkeypatch.setattr(prep_pool.tempfile, "tempdir", str(tmp_path))
    pool = PreparationPool(_double, np.zeros(4, np.float32), workers=1, capacity=2)
    try:
        assert pool.ring_path.startswith(str(tmp_path)) and not os.path.exists(pool.ring_path)
        assert _count(pool, [bytes([3] * 4)] * 3) == [([24, 24], {}), ([24], {})]
    finally:
        pool.close()


def _hang(data: bytes) -> np.ndarray:
    if data == b"hang":
        time.sleep(3600)  # a decoder that never returns
    return np.frombuffer(data, np.uint8).astype(np.float32) * 2


def test_a_stuck_worker_fails_the_call_after_the_stall_time_and_the_next_call_restarts():
    pool = PreparationPool(_hang, np.zeros(4, np.float32), workers=1, capacity=2, stall_s=2)
    try:
        stuck = pool.pids
        with pytest.raises(PoolBroken, match="no image prepared for 2 s"):
            list(pool.batches(2, [b"hang", bytes(4)].__getitem__))
        assert _count(pool, [bytes([3] * 4)]) == [([24], {})]
        assert not set(stuck) & set(pool.pids)
        eventually(lambda: not _alive(stuck[0]), 30, 0.2, "the stuck worker gone")
    finally:
        pool.close()
