"""Inference cost of the ODE models (run: ``python -m bench.inference_speed``).

Prints, on this machine:
1. NFE per scale for each fixed-step solver setting (exact: steps x stages);
2. wall time per B100 image (481x321) per solver for a checkpoint (default: the bundled model);
3. the float32 matmul throughput of this machine next to the throughput the conv nets reach in
   inference (the bundled model's backbone and the paper-size backbones of ``--backbones``,
   any registered one, default vdsr; ``--rdn`` adds rdn; one
   forward pass in NCHW and in channels_last), and the ODE solves of the bundled model per
   solver (NFE x backbone multiply-adds / wall time), as fractions of it.

A benchmark, not a test: the numbers depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import os

import torch

from bench.speed_eval import best_of
from odesr.checkpoints import load_model
from odesr.data import list_images, load_image
from odesr.degrade import make_case
from odesr.nets import backbone_names, build_backbone, count_params
from odesr.ode import SolverSettings

SOLVERS = [
    {"method": "euler", "step_size": 0.25},
    {"method": "rk4", "step_size": 1.0},
    {"method": "rk4", "step_size": 0.1},
    {"method": "dopri5", "rtol": 1e-3, "atol": 1e-4},
]


def _label(opts: dict) -> str:
    if "step_size" in opts:
        return f"{opts['method']} h={opts['step_size']:g}"
    return f"{opts['method']} rtol={opts['rtol']:g}"


def nfe_table(scales: list[float]) -> None:
    print("NFE per scale (fixed-step: steps x stages)")
    fixed = [s for s in SOLVERS if "step_size" in s]
    print("  scale  " + "  ".join(f"{_label(s):>12}" for s in fixed))
    for scale in scales:
        cells = [SolverSettings.from_dict(s).nfe(scale) for s in fixed]
        print(f"  x{scale:<5g} " + "  ".join(f"{c:>12d}" for c in cells))


def wall_per_image(checkpoint: str | None, data_root: str | None, scales: list[float]) -> None:
    model = load_model(checkpoint)
    hr = load_image(list_images("B100", data_root)[0]).rgb[None]
    print(f"wall time per B100 image ({tuple(hr.shape[-2:])}), {checkpoint or 'the bundled model'}")
    for scale in scales:
        _, lr, case = make_case(hr, scale)
        for opts in SOLVERS:
            with torch.no_grad():
                result = {}

                def run(opts=opts, case=case, lr=lr, result=result, scale=scale):
                    result["r"] = model.super_resolve(lr, scale, case.sr_size, solver=opts)

                seconds = best_of(run)
            print(f"  x{scale:<4g} {_label(opts):<18} NFE {result['r'].nfe:>4d}  {seconds:7.2f} s")


def matmul_peak(n: int = 2048, repeat: int = 3) -> float:
    """float32 matmul throughput of this machine (GFLOP/s, n^3, best of ``repeat`` after a
    warm-up call), at the current torch thread count."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    return 2 * n**3 / best_of(lambda: torch.mm(a, b), repeat) / 1e9


def conv_macs(net: torch.nn.Module, h: int, w: int) -> int:
    """Multiply-adds of the same-size conv layers of ``net`` on an h x w input."""
    return sum(m.weight.numel() for m in net.modules() if isinstance(m, torch.nn.Conv2d)) * h * w


def throughput(checkpoint: str | None, backbones: list[str] | tuple[str, ...] = ("vdsr",)) -> None:
    """One backbone pass on 481x321 in NCHW and channels_last, and ODE solves of the bundled
    model per solver, as fractions of the matmul peak measured in the same run."""
    peak = matmul_peak()
    print(f"float32 matmul 2048^3: {peak:.1f} GFLOP/s ({torch.get_num_threads()} threads)")
    x = torch.rand(1, 4, 321, 481)
    model = load_model(checkpoint).eval()
    nets = [("bundled vdsr-ode backbone", model.func.net)]
    nets += [(f"{n} (paper)", build_backbone(n, "paper").eval()) for n in backbones]
    for name, net in nets:
        macs = conv_macs(net, *x.shape[-2:])
        for layout in (torch.contiguous_format, torch.channels_last):
            xin = x.contiguous(memory_format=layout)
            with torch.no_grad():
                net(xin)
                seconds = best_of(lambda net=net, xin=xin: net(xin), 2)
            rate = 2 * macs / seconds / 1e9
            print(
                f"  {name}, {count_params(net) / 1e6:.2f}M params, "
                f"{'channels_last' if layout == torch.channels_last else 'NCHW'}: "
                f"{seconds:.2f} s per pass, {rate:.1f} GFLOP/s = {rate / peak:.0%} of matmul"
            )
    _, lr, case = make_case(torch.rand(1, 3, 321, 480), 2.0)
    macs = conv_macs(model.func.net, *case.sr_size)
    for opts in SOLVERS:
        with torch.no_grad():
            result = {}

            def run(opts=opts, result=result):
                result["r"] = model.super_resolve(lr, 2.0, case.sr_size, solver=opts)

            seconds = best_of(run, 2)
        rate = 2 * macs * result["r"].nfe / seconds / 1e9
        print(
            f"  bundled vdsr-ODE x2 {_label(opts):<18} NFE {result['r'].nfe:>3d}: {seconds:.2f} s, "
            f"{rate:.1f} GFLOP/s = {rate / peak:.0%} of matmul"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=None, help="default: the bundled cpu model")
    parser.add_argument("--data-root", default=os.environ.get("ODESR_DATA"))
    parser.add_argument("--skip-wall", action="store_true")
    parser.add_argument(
        "--backbones",
        default="vdsr",
        help="comma list of registered backbones timed at the paper's size (default: vdsr)",
    )
    parser.add_argument("--rdn", action="store_true", help="also time the paper RDN (slow)")
    args = parser.parse_args(argv)
    backbones = [b.strip() for b in args.backbones.split(",") if b.strip()]
    backbones += ["rdn"] if args.rdn and "rdn" not in backbones else []
    unknown = sorted(set(backbones) - set(backbone_names()))
    if unknown:
        parser.error(
            f"--backbones: unknown {', '.join(unknown)} (known: {', '.join(backbone_names())})"
        )
    print(f"load {os.getloadavg()[0]:.1f}")
    nfe_table([1.1, 1.5, 2.0, 2.4, 3.0, 4.0, 4.5])
    if not args.skip_wall:
        wall_per_image(args.checkpoint, args.data_root, [2.0, 4.0])
    throughput(args.checkpoint, backbones)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
