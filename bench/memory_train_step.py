"""Peak memory (RSS) and time of one endpoint training step, with and without activation
checkpointing of the ODE steps (``checkpoint_recompute``).

Default case (the lead's question): paper-size VDSR ODE, RK4 with step 0.25 from t0 = 4
(12 steps x 4 stages = 48 backbone evaluations), batch 16 of 48x48, L1 + Adam step, CPU.
Each setting runs in its own subprocess so the peak RSS of one does not hide the other's.

    python -m bench.memory_train_step [--batch 16] [--patch 48] [--t0 4] [--steps 1]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def _child(args: argparse.Namespace) -> None:
    import torch
    import torch.nn.functional as F

    from odesr.models import build

    torch.manual_seed(0)
    dev = torch.device(args.device)
    model = build({"name": f"{args.backbone}-ode", "preset": args.preset}).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    x = torch.rand(args.batch, 3, args.patch, args.patch, device=dev)
    y = torch.rand(args.batch, 3, args.patch, args.patch, device=dev)
    base_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times = []
    for _ in range(args.steps):
        start = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        out = model(
            x, args.t0, method=args.method, step_size=args.step_size, checkpoint=args.recompute
        )
        F.l1_loss(out, y).backward()
        opt.step()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        json.dumps(
            {
                "recompute": args.recompute,
                "peak_rss_gb": peak_kb / 2**20,
                "before_step_rss_gb": base_kb / 2**20,
                "step_s": min(times),
                "nfe_forward": model.func.nfe,
                "threads": torch.get_num_threads(),
                "cuda_peak_gb": (
                    torch.cuda.max_memory_allocated() / 2**30 if dev.type == "cuda" else None
                ),
            }
        )
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    from odesr.nets import backbone_names

    p.add_argument("--backbone", default="vdsr", choices=backbone_names())
    p.add_argument("--preset", default="paper")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--patch", type=int, default=48)
    p.add_argument("--t0", type=float, default=4.0)
    p.add_argument("--method", default="rk4")
    p.add_argument("--step-size", type=float, default=0.25)
    p.add_argument("--steps", type=int, default=1, help="training steps timed (min is reported)")
    p.add_argument("--device", default="cpu", help="cpu (peak RSS) or cuda (also peak allocated)")
    p.add_argument("--recompute", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        _child(args)
        return 0
    rows = {}
    for recompute in (True, False):
        cmd = [
            sys.executable,
            __file__,
            "--child",
            "--backbone",
            args.backbone,
            "--preset",
            args.preset,
            "--batch",
            str(args.batch),
            "--patch",
            str(args.patch),
            "--t0",
            str(args.t0),
            "--method",
            args.method,
            "--step-size",
            str(args.step_size),
            "--steps",
            str(args.steps),
            "--device",
            args.device,
        ] + (["--recompute"] if recompute else [])
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0:
            print(
                f"recompute={recompute}: child failed (rc {res.returncode}; killed for memory?)"
                f"\n{res.stderr[-2000:]}",
                file=sys.stderr,
            )
            continue
        row = json.loads(res.stdout.strip().splitlines()[-1])
        rows[recompute] = row
        print(
            f"checkpoint_recompute={str(recompute):5s}  peak RSS {row['peak_rss_gb']:.2f} GB "
            f"(before step {row['before_step_rss_gb']:.2f} GB)  {row['step_s']:.1f} s/step  "
            f"NFE {row['nfe_forward']}  threads {row['threads']}"
            + (f"  CUDA peak {row['cuda_peak_gb']:.2f} GB" if row["cuda_peak_gb"] else "")
        )
    if len(rows) == 2:
        on, off = rows[True], rows[False]
        print(
            f"memory ratio (off / on): {off['peak_rss_gb'] / on['peak_rss_gb']:.2f}x   "
            f"time ratio (on / off): {on['step_s'] / off['step_s']:.2f}x"
        )
    print(
        f"case: {args.backbone}-ode preset {args.preset}, {args.method} step {args.step_size} "
        f"from t0={args.t0}, batch {args.batch} of {args.patch}x{args.patch}"
    )
    return 0 if len(rows) == 2 else 1


if __name__ == "__main__":
    sys.exit(main())
