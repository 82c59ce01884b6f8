"""Speed benchmark of the evaluation path (run: ``python -m bench.speed_eval``).

Prints, on this machine, with the load average at the start of each measurement:
1. the banded resize (down by 1/s and back up, 481x321 RGB) against a plain reference
   implementation that loops over output pixels (same MATLAB kernel), and their ratio;
2. the wall time of the full B100 x 30-scale bicubic evaluation (PSNR + SSIM, 3,000 pairs) as a
   whole process (``odesr eval --model bicubic``, start-up and image loading included), against
   the peer pipeline (:mod:`bench.peer`: MATLAB-port imresize + scikit-image metrics) timed in
   the same run on every ``--peer-every``-th image at the same scales, scaled to all pairs.

A benchmark, not a test: the numbers depend on the machine and its load; compare the ratios.
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

from odesr.data import list_images
from odesr.evaluate import parse_scales
from odesr.resize import imresize


def _cubic(x: float) -> float:
    ax = abs(x)
    if ax <= 1:
        return 1.5 * ax**3 - 2.5 * ax**2 + 1
    if ax <= 2:
        return -0.5 * ax**3 + 2.5 * ax**2 - 4 * ax + 2
    return 0.0


def reference_resize_1d(x: np.ndarray, out_len: int, scale: float) -> np.ndarray:
    """Plain MATLAB-bicubic resize along axis 0: a Python loop over output pixels."""
    in_len = x.shape[0]
    width = 4.0 / scale if scale < 1 else 4.0
    out = np.empty((out_len,) + x.shape[1:])
    for i in range(out_len):
        u = (i + 1) / scale + 0.5 * (1 - 1 / scale)
        left = math.floor(u - width / 2)
        acc = np.zeros(x.shape[1:])
        total = 0.0
        for k in range(int(math.ceil(width)) + 2):
            j = left + k
            w = scale * _cubic(scale * (u - j)) if scale < 1 else _cubic(u - j)
            src = j - 1
            src = -src - 1 if src < 0 else (2 * in_len - src - 1 if src >= in_len else src)
            acc += w * x[src]
            total += w
        out[i] = acc / total
    return out


def reference_down_up(img: np.ndarray, scale: float) -> np.ndarray:
    """img (H, W, C): shrink by 1/scale (ceil size) and enlarge back to (H, W), loop version."""
    h, w = img.shape[:2]
    lh, lw = math.ceil(h / scale), math.ceil(w / scale)
    small = reference_resize_1d(img, lh, 1 / scale)
    small = reference_resize_1d(small.transpose(1, 0, 2), lw, 1 / scale).transpose(1, 0, 2)
    big = reference_resize_1d(small, h, scale)
    return reference_resize_1d(big.transpose(1, 0, 2), w, scale).transpose(1, 0, 2)


def best_of(fn, repeat: int = 1) -> float:
    """Shortest wall time of ``repeat`` calls of ``fn`` (seconds)."""
    best = math.inf
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def load() -> str:
    """The 1-minute load average, for the record next to each timing."""
    return f"load {os.getloadavg()[0]:.1f}"


def bicubic_vs_peer(data_root: str | None, scales_text: str, peer_every: int) -> dict:
    """Whole-process bicubic B100 evaluation vs the peer pipeline; returns the numbers."""
    import numpy as np
    from PIL import Image

    from bench.peer import peer_pair

    scales = parse_scales(scales_text)
    files = list_images("B100", data_root)
    pairs = len(files) * len(scales)
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "odesr.cli", "eval", "--model", "bicubic"]
        cmd += ["--dataset", "B100", "--scales", scales_text, "--no-progress"]
        cmd += ["--out", os.path.join(tmp, "b100.csv")]
        if data_root:
            cmd += ["--data-root", str(data_root)]
        before = load()
        start = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        ours = time.perf_counter() - start
    print(
        f"B100 bicubic, {len(scales)} scales, {pairs} pairs (PSNR+SSIM), whole process "
        f"`odesr eval`: {ours:.1f} s wall ({before}; {os.cpu_count()} cores)"
    )
    sample = files[:: max(peer_every, 1)]
    before = load()
    start = time.perf_counter()
    for f in sample:
        hr = np.asarray(Image.open(f).convert("RGB"))
        for scale in scales:
            peer_pair(hr, scale)
    per_pair = (time.perf_counter() - start) / (len(sample) * len(scales))
    peer = per_pair * pairs
    print(
        f"peer (MATLAB-port imresize + skimage), {len(sample)} images x {len(scales)} scales: "
        f"{per_pair * 1e3:.1f} ms per pair -> {peer:.0f} s for {pairs} pairs ({before}); "
        f"ratio {peer / ours:.1f}x"
    )
    return {"ours_s": ours, "peer_s": peer, "ratio": peer / ours}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default=os.environ.get("ODESR_DATA"))
    parser.add_argument("--scales", default="1.1:4.0:0.1")
    parser.add_argument("--skip-dataset", action="store_true")
    parser.add_argument(
        "--peer-every", type=int, default=10, help="time the peer on every N-th image (1: all)"
    )
    args = parser.parse_args(argv)
    # one thread: the loop reference is single-threaded, and on a busy machine two threads of
    # small matrix products fight for the cores (1.6 s against 0.15 at load 6)
    torch.set_num_threads(1)

    rng = np.random.default_rng(0)
    img = rng.random((321, 481, 3))
    x = torch.from_numpy(img.transpose(2, 0, 1).copy()).to(torch.float32)[None]
    scale = 2.7
    fast = best_of(lambda: imresize(imresize(x, scale=1 / scale), scale=scale, size=(321, 481)), 5)
    slow = best_of(lambda: reference_down_up(img, scale), 1)
    ref = torch.from_numpy(reference_down_up(img, scale).transpose(2, 0, 1))[None]
    got = imresize(imresize(x.double(), scale=1 / scale), scale=scale, size=(321, 481))
    err = float((ref - got).abs().max())
    print(
        f"resize down+up x{scale} of 481x321 RGB: matrix {fast * 1e3:.1f} ms, "
        f"loop reference {slow * 1e3:.0f} ms, ratio {slow / fast:.0f}x (max diff {err:.1e})"
    )

    if not args.skip_dataset:
        bicubic_vs_peer(args.data_root, args.scales, args.peer_every)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
