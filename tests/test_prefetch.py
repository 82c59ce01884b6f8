"""Batches made ahead in worker processes (odesr.prefetch) are the serial sampler's batches, in
its order, and the resume state is the serial state before the next batch handed out."""

from __future__ import annotations

import pytest
import torch

from odesr.batches import PatchSampler
from odesr.prefetch import Prefetcher, batch_source
from odesr.train_config import DEFAULT_SCALES


def _images() -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(5)
    sizes = [(60, 80), (90, 64), (72, 72)]
    return [torch.randint(0, 256, (3, h, w), generator=gen, dtype=torch.uint8) for h, w in sizes]


def _sampler(kind: str = "upscaled", mixed: bool = True) -> PatchSampler:
    cfg = {"patch_size": 32, "batch_size": 3, "scales": DEFAULT_SCALES, "align_grid": True}
    return PatchSampler(_images(), cfg, kind, "endpoint", seed=4, mixed=mixed)


def _same(a: dict, b: dict) -> bool:
    if a.keys() != b.keys():
        return False
    return all(torch.equal(a[k], b[k]) if torch.is_tensor(a[k]) else a[k] == b[k] for k in a)


@pytest.mark.parametrize(
    ("kind", "mixed"), [("upscaled", True), ("upscaled", False), ("lr", False)]
)
def test_prefetched_batches_are_the_serial_ones(kind: str, mixed: bool) -> None:
    serial = _sampler(kind, mixed)
    expected = [serial.next() for _ in range(5)]
    with Prefetcher(_sampler(kind, mixed), workers=2) as ahead:
        got = [ahead.next() for _ in range(5)]
    assert all(_same(a, b) for a, b in zip(expected, got, strict=True))
    # the batches differ from each other (the draws advance)
    assert not torch.equal(expected[0]["target"], expected[1]["target"])


def test_state_is_the_serial_state_before_the_next_batch() -> None:
    serial = _sampler()
    for _ in range(3):
        serial.next()
    fourth = serial.next()
    ahead = Prefetcher(_sampler(), workers=2, depth=4)
    for _ in range(3):
        ahead.next()
    state = ahead.state_dict()  # four batches were made ahead; the state ignores them
    resumed = _sampler()
    resumed.load_state_dict(state)
    assert _same(resumed.next(), fourth)
    ahead.close()  # closing rewinds the wrapped sampler to the same point
    assert _same(ahead.sampler.next(), fourth)


def test_load_state_drops_batches_made_ahead() -> None:
    serial = _sampler()
    start = serial.state_dict()
    first = serial.next()
    with Prefetcher(_sampler(), workers=1) as ahead:
        ahead.next()
        ahead.next()
        ahead.load_state_dict(start)
        assert _same(ahead.next(), first)


def test_worker_count_checked() -> None:
    sampler = _sampler()
    assert batch_source(sampler, 0) is sampler
    with pytest.raises(ValueError, match="--data-workers must be >= 0, got -1"):
        batch_source(sampler, -1)
