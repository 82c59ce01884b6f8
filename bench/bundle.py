"""Make the bundled model from a trained checkpoint: weights and spec only (no optimizer state).

    python -m bench.bundle checkpoints/cpu/vdsr-ode-1ffe079495/final.pt \
        --config cpu/vdsr-ode --out odesr/weights/vdsr-ode-cpu.pt

The file keeps ``step``, the config name, the weights key (``odesr.config.weights_hash``) and a
note naming the training recipe and solver, so ``odesr.checkpoints.load`` rebuilds it with no
config.
"""

from __future__ import annotations

import argparse
import sys

from odesr.checkpoints import load, load_checkpoint, save_checkpoint
from odesr.config import weights_hash
from odesr.train import load_config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bundle", description=__doc__)
    parser.add_argument("checkpoint", help="a final.pt made by odesr train / bench")
    parser.add_argument("--config", required=True, help="the config it was trained with")
    parser.add_argument("--out", default="odesr/weights/vdsr-ode-cpu.pt")
    args = parser.parse_args(argv)
    model = load(args.checkpoint)
    extra = load_checkpoint(args.checkpoint)[1]
    cfg = load_config(args.config)
    key = weights_hash(cfg)
    saved = extra.get("config") or {}
    if saved and weights_hash(saved) != key:
        print(f"bundle: {args.checkpoint} was not trained with {args.config}", file=sys.stderr)
        return 2
    steps = int(extra.get("step", cfg["max_steps"]))
    solver = model.spec.get("train_solver") or {}
    note = (
        f"bundled default of odesr upscale; {args.config} (recipe {cfg['recipe']}), seed "
        f"{cfg['seed']}, {', '.join(cfg['data'])}, {steps} steps, {extra.get('weights', 'last')} "
        f"weights; solver default {solver.get('method')} steps {solver.get('steps')} (as trained)"
    )
    save_checkpoint(args.out, model, step=steps, config=args.config, weights_key=key, note=note)
    print(f"bundle: {args.out}: {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
