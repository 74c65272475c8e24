"""Image preparation in worker processes, written straight into a ring of batch buffers that
the model reads in place.

Threads of one process decode and resize under one GIL; these workers each have their own.
The ring is one shared mapping (a file in /dev/shm, or in the temporary directory where
/dev/shm is too small for it) holding `slots` batches of `capacity` prepared images: a worker
writes image `pos` of slot `s` at `buffers[s, pos]`, and the caller gets `buffers[s, :n]`, a
view, for the forward pass. The file is unlinked as soon as every worker has mapped it, so no
named segment outlives the pool, however the process ends.

Workers start with `spawn` (never fork a process that may hold CUDA). A spawned child imports
what it unpickles by module name, and the handler's modules may live in a package only its
parent process made up (the SageMaker emulator imports code/ as a synthetic package): so a
worker starts by running this file (`runpy`), recreates that package, then unpickles its work.
This module imports nothing from its siblings for that reason.
"""

from __future__ import annotations

import contextlib
import importlib
import mmap
import multiprocessing
import os
import pickle
import queue
import runpy
import shutil
import sys
import tempfile
import threading
import time
import types
import weakref
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

WORKER_RUN_NAME = "__imgsim_prep_worker__"
START_TIMEOUT_S = 120.0
POLL_S = 1.0
SHM_DIR = "/dev/shm"
# No image prepared for this long while some are outstanding: a worker is stuck on one (a
# decoder that never returns), and the call fails rather than hang the model server.
STALL_S = 300.0


class PoolBroken(RuntimeError):
    """A worker process died (killed, crashed): the call fails; the next one restarts the pool."""


class PreparationPool:
    """`workers` spawned processes running `prepare(data: bytes) -> ndarray` (a picklable
    callable whose output has `item`'s shape and dtype) into `slots` buffers of `capacity`."""

    def __init__(
        self,
        prepare: Callable[[bytes], np.ndarray],
        item: np.ndarray,
        workers: int,
        capacity: int,
        slots: int = 3,
        stall_s: float = STALL_S,
    ) -> None:
        if workers < 1 or capacity < 1 or slots < 2:
            raise ValueError(f"workers {workers}, capacity {capacity}, slots {slots}: too few")
        self.workers, self.capacity, self.slots = workers, capacity, slots
        self.stall_s = stall_s
        self.shape, self.dtype = tuple(item.shape), np.dtype(item.dtype)
        self._prepare = pickle.dumps(prepare)
        self._package = _package_of(prepare)
        self._outstanding: dict[int, list[Any]] = {}
        self._start()

    @property
    def nbytes(self) -> int:
        return self.slots * self.capacity * int(np.prod(self.shape)) * self.dtype.itemsize

    def _start(self) -> None:
        ctx = multiprocessing.get_context("spawn")
        directory = SHM_DIR if _free_bytes(SHM_DIR) > 2 * self.nbytes else tempfile.gettempdir()
        fd, path = tempfile.mkstemp(prefix="imgsim-prep-", dir=directory)
        try:
            os.ftruncate(fd, self.nbytes)
            self._map = mmap.mmap(fd, self.nbytes)
        finally:
            os.close(fd)
        self.ring_path = path
        # One task queue per worker: a worker killed while it waits on a shared queue would
        # take that queue's lock with it.
        self._tasks = [ctx.Queue() for _ in range(self.workers)]
        self._results = ctx.Queue()
        self._queued = [0] * self.workers
        self._queued_lock = threading.Lock()
        args = {
            "path": path,
            "nbytes": self.nbytes,
            "shape": (self.slots, self.capacity, *self.shape),
            "dtype": self.dtype.str,
            "prepare": self._prepare,
            "package": self._package,
            "results": self._results,
        }
        self._procs = [
            ctx.Process(
                target=runpy.run_path,
                args=(os.path.abspath(__file__),),
                kwargs={
                    "init_globals": {"WORKER_ARGS": {**args, "index": i, "tasks": tasks}},
                    "run_name": WORKER_RUN_NAME,
                },
                name=f"imgsim-prep-{i}",
                daemon=True,
            )
            for i, tasks in enumerate(self._tasks)
        ]
        self._finalizer = weakref.finalize(
            self, _shutdown, self._procs, self._tasks, self._results, self._map, path
        )
        try:
            for proc in self._procs:
                proc.start()
            self._await_ready()
        except BaseException:
            self._finalizer()
            raise
        finally:
            _unlink(path)  # every worker has mapped it (or the pool failed to start)
        self.buffers = np.frombuffer(self._map, self.dtype).reshape(
            self.slots, self.capacity, *self.shape
        )
        self._broken = False

    def _await_ready(self) -> None:
        ready, waited = 0, 0.0
        while ready < self.workers:
            try:
                message = self._results.get(timeout=POLL_S)
            except queue.Empty:
                waited += POLL_S
                dead = [p for p in self._procs if not p.is_alive()]
                if dead or waited >= START_TIMEOUT_S:
                    reason = f"exit code {dead[0].exitcode}" if dead else "timed out"
                    raise PoolBroken(f"preparation workers did not start ({reason})") from None
                continue
            if message[0] == "failed":
                raise PoolBroken(f"a preparation worker failed to start: {message[1]}")
            ready += 1

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self._procs if p.pid is not None]

    def alive(self) -> list[bool]:
        """Whether each worker still runs (an exited one is reaped here)."""
        return [p.is_alive() for p in self._procs]

    def batches(
        self, count: int, load: Callable[[int], bytes], io_threads: int = 4
    ) -> Iterator[tuple[np.ndarray, dict[int, str]]]:
        """Items 0..count-1 (their bytes from `load(index)`, called in `io_threads` threads:
        S3 reads wait on the network, not the GIL), in batches of `capacity`, in order: a view
        of the batch's prepared rows in the ring, and the errors by position in the batch (a
        failed row holds garbage). The view is valid until the next batch is asked for."""
        if self._broken or not all(self.alive()):
            self.close()  # a worker died between calls: start afresh, all of them
            self._start()
        free = deque(range(self.slots))
        order: deque[tuple[int, int]] = deque()
        starts = iter(range(0, count, self.capacity))

        def feed(slot: int, pos: int, index: int) -> None:
            try:
                data = load(index)
            except Exception as exc:  # one unreadable image is an error line
                self._results.put((slot, pos, f"{type(exc).__name__}: {exc}", -1))
            else:
                with self._queued_lock:  # to the worker with the least queued
                    worker = self._queued.index(min(self._queued))
                    self._queued[worker] += 1
                try:
                    self._tasks[worker].put((slot, pos, data))
                except Exception as exc:  # a broken queue: the row fails, the wait still ends
                    with self._queued_lock:
                        self._queued[worker] -= 1
                    self._results.put((slot, pos, f"{type(exc).__name__}: {exc}", -1))

        with ThreadPoolExecutor(max_workers=max(1, io_threads), thread_name_prefix="fetch") as io:

            def fill() -> None:
                while free:
                    start = next(starts, None)
                    if start is None:
                        return
                    slot, size = free.popleft(), min(self.capacity, count - start)
                    self._outstanding[slot] = [size, {}]
                    order.append((slot, size))
                    for pos in range(size):
                        io.submit(feed, slot, pos, start + pos)

            try:
                fill()
                while order:
                    slot, size = order.popleft()
                    self._wait(slot)
                    yield self.buffers[slot, :size], self._outstanding[slot][1]
                    del self._outstanding[slot]
                    free.append(slot)
                    fill()
            finally:
                # An abandoned call (the forward pass failed): let every scheduled image land
                # before the ring is reused.
                if not self._broken:
                    for slot in list(self._outstanding):
                        self._wait(slot)
                self._outstanding.clear()

    def _wait(self, slot: int) -> None:
        progress = time.monotonic()
        while self._outstanding[slot][0] > 0:
            try:
                done, pos, error, worker = self._results.get(timeout=min(POLL_S, self.stall_s))
            except queue.Empty:
                dead = [p for p in self._procs if not p.is_alive()]
                if dead:
                    self._broken = True
                    raise PoolBroken(
                        f"preparation worker {dead[0].name} exited with code {dead[0].exitcode}"
                    ) from None
                if time.monotonic() - progress > self.stall_s:
                    self._broken = True  # the next call starts the workers afresh
                    raise PoolBroken(
                        f"no image prepared for {self.stall_s:.0f} s: a preparation worker is "
                        "stuck (IMGSIM_PREPARATION_STALL_SECONDS)"
                    ) from None
                continue
            progress = time.monotonic()
            if worker >= 0:
                with self._queued_lock:
                    self._queued[worker] -= 1
            entry = self._outstanding.get(done)
            if entry is None:
                continue
            entry[0] -= 1
            if error is not None:
                entry[1][pos] = error

    def close(self) -> None:
        """Stop the workers and release the ring (idempotent)."""
        self.__dict__.pop("buffers", None)
        self._finalizer()


def _shutdown(procs: list[Any], tasks: list[Any], results: Any, ring: mmap.mmap, path: str) -> None:
    for proc, queue_ in zip(procs, tasks, strict=True):
        if proc.is_alive():
            with contextlib.suppress(OSError, ValueError):
                queue_.put(None)
    for proc in procs:
        if proc.pid is None:
            continue
        proc.join(timeout=5)
        if proc.is_alive():
            proc.terminate()
            proc.join(timeout=5)
        if proc.is_alive():
            proc.kill()
            proc.join()
    for q in (*tasks, results):
        q.cancel_join_thread()
        q.close()
    _unlink(path)
    with contextlib.suppress(BufferError):  # a batch view still referenced: it goes with it
        ring.close()


def _unlink(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _free_bytes(directory: str) -> int:
    try:
        return shutil.disk_usage(directory).free
    except OSError:
        return 0


def _package_of(fn: Any) -> tuple[str, str] | None:
    """(package, its directory) of the module defining `fn`, for a worker to import it."""
    module = sys.modules.get(getattr(fn, "__module__", "") or "")
    if module is None or not getattr(module, "__file__", None):
        return None
    directory = os.path.dirname(os.path.abspath(module.__file__ or ""))
    return (module.__package__ or "", directory)


def _importable(package: tuple[str, str] | None) -> None:
    """Make the parent's handler modules importable here: a real package imports as it is, a
    top-level module (SageMaker's code/ layout) from its directory, and a package the parent
    made up in memory (the emulator) is made up again the same way."""
    if package is None:
        return
    name, directory = package
    if not name:
        if directory not in sys.path:
            sys.path.insert(0, directory)
        return
    try:
        importlib.import_module(name)
    except ImportError:
        made_up = types.ModuleType(name)
        made_up.__path__ = [directory]
        sys.modules[name] = made_up


def _serve(
    path: str,
    nbytes: int,
    shape: tuple[int, ...],
    dtype: str,
    prepare: bytes,
    package: tuple[str, str] | None,
    index: int,
    tasks: Any,
    results: Any,
) -> None:
    """A worker: map the ring, then prepare images until told to stop or the parent is gone."""
    try:
        _importable(package)
        fn = pickle.loads(prepare)
        with open(path, "r+b") as file:
            ring = mmap.mmap(file.fileno(), nbytes)
        buffers = np.frombuffer(ring, np.dtype(dtype)).reshape(shape)
    except BaseException as exc:
        results.put(("failed", f"{type(exc).__name__}: {exc}", None, index))
        raise
    results.put(("ready", os.getpid(), None, index))
    parent = multiprocessing.parent_process()
    while True:
        try:
            task = tasks.get(timeout=POLL_S)
        except queue.Empty:
            if parent is not None and not parent.is_alive():
                return  # the model server died: do not linger
            continue
        if task is None:
            return
        slot, pos, data = task
        try:
            prepared = fn(data)
            if prepared.shape != buffers.shape[2:]:
                raise ValueError(f"prepared shape {prepared.shape}, not {buffers.shape[2:]}")
            buffers[slot, pos] = prepared
        except Exception as exc:  # one bad image is an error line, not a failed batch
            results.put((slot, pos, f"{type(exc).__name__}: {exc}", index))
        else:
            results.put((slot, pos, None, index))


if __name__ == WORKER_RUN_NAME:
    _serve(**globals()["WORKER_ARGS"])
