"""Recipe sweeps (issue 9): train short runs defined in a YAML file and score them, resumably.

    python -m bench.recipe_sweep bench/sweeps/recipe-cpu.yaml [--only NAME,...] [--runs runs/sweeps]
        [--out results/cpu/recipe-sweeps] [--data-root DIR] [--report-only]

Each run is ``config`` (``odesr/configs`` name) + the file's ``common`` delta + the run's
optional named ``recipe`` delta + its ``set`` (deep merged in that order). Its checkpoint lives in
``RUNS/NAME/`` (resumed when killed); its scores are appended to ``OUT.jsonl`` once (a run already
there is skipped) and ``OUT.md`` is rewritten from all records. Scores: PSNR (Y, default
protocol) of ``final.pt`` minus bicubic's on the held-out images and on B100's first
``b100_images`` images at each of ``scales``, with :func:`odesr.evaluate.evaluate_images` (the
code of ``odesr eval``); ODE models are solved with their training solver.
Run it with OMP_NUM_THREADS=1, one sweep at a time.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import yaml

from odesr.data import list_images, load_image
from odesr.evaluate import EvalSettings, evaluate_images, summarize
from odesr.io import write_text_atomic
from odesr.train import holdout_files, load_config, train

__all__ = ["dotted", "recipe", "run_config", "score", "render", "main"]


SWEEP_FILE = Path(__file__).with_name("sweeps") / "recipe-cpu.yaml"
WHOLE_KEYS = frozenset({"train_solver"})  # mappings a delta replaces as a whole


def dotted(delta: dict, prefix: str = "") -> dict:
    """A nested config delta as ``{dotted.key: value}`` overrides that merge into a config key by
    key (``train_solver`` is replaced whole, so a solver is exactly what the delta writes)."""
    out: dict = {}
    for key, value in delta.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value and path not in WHOLE_KEYS:
            out.update(dotted(value, path + "."))
        else:
            out[path] = value
    return out


def recipe(name: str, path: str | Path = SWEEP_FILE) -> dict:
    """The named recipe of a sweep file as ``{dotted.key: value}`` overrides."""
    return dotted(yaml.safe_load(Path(path).read_text(encoding="utf-8"))["recipes"][name])


def run_config(spec: dict, run: dict) -> dict:
    """The training config of ``run`` (see module docstring)."""
    overrides = dotted(spec.get("common") or {})
    if run.get("recipe"):
        overrides.update(dotted(spec["recipes"][run["recipe"]]))
    overrides.update(dotted(run.get("set") or {}))
    return load_config(run["config"], overrides)


def _psnr(model, images, scales, solve_opts) -> dict[str, float]:
    settings = EvalSettings(solver=solve_opts or None, workers=1)  # one process: a shared machine
    rows = evaluate_images(model, images, scales, settings)
    return {f"{s:g}": p for s, p, _, _ in summarize(rows)}


def _eval_solver(cfg: dict) -> dict:
    solver = {k: v for k, v in (cfg.get("train_solver") or {}).items() if v is not None}
    return solver if str(cfg["model"]["name"]).endswith("-ode") else {}


def score(cfg: dict, final: Path, spec: dict, data_root: str | None, cache: dict) -> dict:
    """PSNR gains over bicubic per image set and scale for the checkpoint ``final``."""
    from odesr.models import build, load

    scales = [float(s) for s in spec["scales"]]
    sets = {
        "held-out": [load_image(f) for f in holdout_files(cfg, data_root)],
        "B100": [load_image(f) for f in list_images("B100", data_root)[: int(spec["b100_images"])]],
    }
    model = load(final)
    opts = _eval_solver(cfg)
    out: dict = {"solver": opts}
    for name, images in sets.items():
        if name not in cache:
            cache[name] = _psnr(build({"name": "bicubic"}), images, scales, {})
        psnr = _psnr(model, images, scales, opts)
        out[name] = {k: round(psnr[k] - cache[name][k], 4) for k in psnr}
        out[name + " psnr"] = {k: round(v, 4) for k, v in psnr.items()}
    return out


def _train_seconds(run_dir: Path) -> float:
    path = run_dir / "train_seconds.json"
    return json.loads(path.read_text())["seconds"] if path.exists() else 0.0


def _train_run(cfg: dict, run_dir: Path, data_root: str | None) -> float:
    """Train (resuming) and return the accumulated training wall time in seconds."""
    if (run_dir / "final.pt").exists():
        return _train_seconds(run_dir)
    spent = _train_seconds(run_dir)
    start = time.perf_counter()
    train(cfg, run_dir, resume=(run_dir / "last.pt").exists(), data_root=data_root, progress=False)
    spent += time.perf_counter() - start
    write_text_atomic(run_dir / "train_seconds.json", json.dumps({"seconds": spent}))
    return spent


def _delta_text(run: dict) -> str:
    parts = [f"recipe {run['recipe']}"] if run.get("recipe") else []
    parts += [json.dumps(run.get("set") or {}, separators=(",", ":"))]
    return "; ".join(parts)


def render(records: list[dict], spec: dict) -> str:
    """Markdown table of every scored run (gains in dB over bicubic)."""
    scales = [f"{float(s):g}" for s in spec["scales"]]
    head = ["run", "config", "delta", "steps", "train s", "eval solver"]
    head += [f"held-out x{s}" for s in scales] + [f"B100 x{s}" for s in scales]
    lines = [
        "# cpu recipe sweeps (issue 9)",
        "",
        "Generated by `python -m bench.recipe_sweep bench/sweeps/recipe-cpu.yaml` (do not edit by "
        "hand). Gains in dB of Y-PSNR over bicubic on the same images: held-out = "
        f"{spec['common']['holdout']['n_images']} {spec['common']['holdout']['dataset']} "
        "images kept out of "
        f"training; B100 = its first {spec['b100_images']} images. `train s` is training wall "
        "time with one thread on the shared 2-core machine (noisy).",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for r in records:
        cells = [r["name"], r["config"], r["delta"].replace("|", "\\|"), str(r["steps"])]
        cells += [f"{r['train_seconds']:.0f}", json.dumps(r["solver"], separators=(",", ":"))]
        cells += [f"{r['held-out'][s]:+.2f}" for s in scales]
        cells += [f"{r['B100'][s]:+.2f}" for s in scales]
        lines.append("| " + " | ".join(cells) + " |")
    notes = [f"- **{r['name']}**: {r['note']}" for r in records if r.get("note")]
    return "\n".join(lines + [""] + notes) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.recipe_sweep", description=__doc__)
    parser.add_argument("spec", help="sweep YAML (e.g. bench/sweeps/recipe-cpu.yaml)")
    parser.add_argument("--only", default=None, help="comma list of run names")
    parser.add_argument("--runs", default="runs/sweeps", help="checkpoint folder root")
    parser.add_argument("--out", default="results/cpu/recipe-sweeps", help="OUT.jsonl / OUT.md")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--report-only", action="store_true", help="only rewrite OUT.md")
    args = parser.parse_args(argv)
    try:
        spec = yaml.safe_load(Path(args.spec).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        print(f"recipe_sweep: {args.spec}: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out)
    jsonl = out.with_suffix(".jsonl")
    records = [json.loads(x) for x in jsonl.read_text().splitlines()] if jsonl.exists() else []
    done = {r["name"] for r in records}
    only = set(args.only.split(",")) if args.only else None
    cache: dict = {}
    for run in spec["runs"] if not args.report_only else []:
        if run["name"] in done or (only and run["name"] not in only):
            continue
        cfg = run_config(spec, run)
        run_dir = Path(args.runs) / run["name"]
        print(f"recipe_sweep: {run['name']}: training -> {run_dir}", flush=True)
        seconds = _train_run(cfg, run_dir, args.data_root)
        print(f"recipe_sweep: {run['name']}: trained in {seconds:.0f} s; scoring", flush=True)
        rec = {
            "name": run["name"],
            "config": run["config"],
            "delta": _delta_text(run),
            "note": run.get("note", ""),
            "steps": int(cfg["max_steps"]),
            "train_seconds": round(seconds, 1),
            "threads": torch.get_num_threads(),
            **score(cfg, run_dir / "final.pt", spec, args.data_root, cache),
        }
        records.append(rec)
        out.parent.mkdir(parents=True, exist_ok=True)
        with open(jsonl, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(rec) + "\n")
        write_text_atomic(out.with_suffix(".md"), render(records, spec))
        print(
            f"recipe_sweep: {run['name']}: held-out {rec['held-out']}, B100 {rec['B100']}",
            flush=True,
        )
    if records:
        write_text_atomic(out.with_suffix(".md"), render(records, spec))
    return 0


if __name__ == "__main__":
    sys.exit(main())
