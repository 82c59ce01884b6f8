"""Training batches made ahead in worker processes, identical to the serial ones.

On a GPU the training step of the small and mid-size nets takes less time than making its batch
on one CPU core (cutting patches and MATLAB-bicubic I(t0) per sample), so a serial loop leaves
the GPU waiting. :class:`Prefetcher` draws each batch's random numbers in the main process, in
the order the serial sampler draws them (:meth:`PatchSampler.plan`), and hands the expensive,
pure part (:meth:`PatchSampler.make`) to ``workers`` forked processes. The batches, their order
and the resume state are the same as with no workers: ``state_dict()`` is the sampler's state
before the first batch not yet handed out, so a run resumed from a checkpoint draws the batches
that were prefetched but never trained on.

``odesr train --data-workers N`` turns it on (0, the default, makes batches in the main process).
Workers are forked (POSIX only) after the images are loaded, so they share them without copying;
they never touch the GPU.
"""

from __future__ import annotations

import collections
import multiprocessing
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Protocol

import torch

__all__ = ["BatchSource", "Prefetcher", "batch_source"]


class BatchSource(Protocol):
    """What :class:`Prefetcher` needs of a sampler (``odesr.batches.PatchSampler`` has it)."""

    def plan(self) -> dict: ...

    def make(self, plan: dict) -> dict: ...

    def next(self) -> dict: ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...


# the samplers of the open prefetchers, by id: workers, forked whenever the pool starts one,
# inherit them (nothing is pickled but the plan and the batch)
_SOURCES: dict[int, BatchSource] = {}


def _worker_init() -> None:
    torch.set_num_threads(1)


def _make(key: int, plan: dict) -> dict:
    return _SOURCES[key].make(plan)


class Prefetcher:
    """``next()`` of ``sampler``, with up to ``depth`` batches made ahead by ``workers``
    forked processes (default depth: twice the workers). Close it (or use ``with``) to stop them."""

    def __init__(self, sampler: BatchSource, workers: int, depth: int | None = None) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        if "fork" not in multiprocessing.get_all_start_methods():
            raise ValueError("--data-workers needs the fork start method (Linux, macOS)")
        self.sampler = sampler
        self.workers = int(workers)
        self.depth = int(depth or 2 * workers)
        self._queue: collections.deque[tuple[dict, Future]] = collections.deque()
        self._pool: ProcessPoolExecutor | None = None

    def _start(self) -> None:
        _SOURCES[id(self)] = self.sampler
        self._pool = ProcessPoolExecutor(
            self.workers, mp_context=multiprocessing.get_context("fork"), initializer=_worker_init
        )

    def _fill(self) -> None:
        while len(self._queue) < self.depth:
            state = self.sampler.state_dict()
            plan = self.sampler.plan()
            assert self._pool is not None
            self._queue.append((state, self._pool.submit(_make, id(self), plan)))

    def next(self) -> dict:
        """The next batch, the one the sampler's own ``next()`` would give."""
        if self._pool is None:
            self._start()
        self._fill()
        _, pending = self._queue.popleft()
        batch = pending.result()
        self._fill()
        return batch

    def state_dict(self) -> dict:
        """The sampler's state before the next batch to be handed out."""
        return self._queue[0][0] if self._queue else self.sampler.state_dict()

    def load_state_dict(self, state: dict) -> None:
        """Restore the sampler; batches made ahead from the old state are dropped."""
        self._queue.clear()
        self.sampler.load_state_dict(state)

    def close(self) -> None:
        """Stop the workers (batches made ahead are dropped; ``state_dict`` keeps its value)."""
        if self._queue:
            self.sampler.load_state_dict(self._queue[0][0])
            self._queue.clear()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
            _SOURCES.pop(id(self), None)

    def __enter__(self) -> Prefetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def batch_source(sampler: BatchSource, workers: int) -> BatchSource | Prefetcher:
    """``sampler`` itself for ``workers == 0``, else a :class:`Prefetcher` around it."""
    if workers < 0:
        raise ValueError(f"--data-workers must be >= 0, got {workers}")
    if workers == 0:
        return sampler
    return Prefetcher(sampler, workers)
