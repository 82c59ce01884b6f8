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

from odesr.batches import holdout_files
from odesr.config import weights_hash
from odesr.data import list_images, load_image
from odesr.evaluate import EvalSettings, evaluate_images, summarize
from odesr.io import write_text_atomic
from odesr.train import load_config, train

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
    from odesr.checkpoints import load
    from odesr.models import build

    scales = [float(s) for s in spec["scales"]]
    sets = {"held-out": [load_image(f) for f in holdout_files(cfg, data_root)]}
    if int(spec.get("b100_images") or 0) > 0:
        b100 = list_images("B100", data_root)[: int(spec["b100_images"])]
        sets["B100"] = [load_image(f) for f in b100]
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


def published_weights(run: dict, cfg: dict) -> Path:
    """The published weights file a run reuses instead of training (``reuse: DIR``): the
    config's model id and weights key, ``DIR/<model>-<key>.pt``, which must exist."""
    model = str(run["config"]).split("/")[-1]
    path = Path(run["reuse"]) / f"{model}-{weights_hash(cfg)}.pt"
    if not path.is_file():
        raise FileNotFoundError(f"{run['name']}: no published weights {path} for this config")
    return path


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


def paper_gains(spec: dict, path: Path | None) -> dict[str, dict[str, float]]:
    """``{paper method: {scale: gain over bicubic}}`` of the paper's Table 1 (B100, 100 images)
    for the methods the runs name (``paper``); empty without the tables."""
    if path is None or not Path(path).is_file():
        return {}
    import pandas as pd

    ref = pd.read_csv(path, dtype={"solver": str}, keep_default_na=False)
    ref = ref[(ref["table"] == "table1") & (ref["dataset"] == "B100")]
    rows = zip(ref["method"], ref["scale"], ref["psnr"], strict=True)
    psnr = {(m, f"{float(s):g}"): float(p) for m, s, p in rows}
    out: dict[str, dict[str, float]] = {}
    for method in {r["paper"] for r in spec["runs"] if r.get("paper")}:
        out[method] = {
            f"{float(s):g}": psnr[(method, f"{float(s):g}")] - psnr[("bicubic", f"{float(s):g}")]
            for s in spec["scales"]
            if (method, f"{float(s):g}") in psnr and ("bicubic", f"{float(s):g}") in psnr
        }
    return out


def fractions(record: dict, paper: dict[str, float], scales: list[str]) -> dict[str, float]:
    """Held-out gain / the paper's gain at each scale (NaN where the paper has none)."""
    return {s: record["held-out"][s] / paper[s] if paper.get(s) else float("nan") for s in scales}


def choose(records: list[dict], spec: dict, paper: dict) -> dict[str, tuple[str, str]]:
    """The recipe per paper method, ``{method: (run name, rule)}``, among the runs that are
    candidates (not ``candidate: false``, e.g. an ablation with another model id):

    * rule ``criterion`` (``spec['criterion']``): among the runs whose held-out gain reaches
      ``min_fraction`` of the paper's gain at every scale, the highest mean fraction;
    * rule ``maximin``, when no run reaches the floor everywhere: the highest smallest fraction
      over the scales (the scale served worst is served best), ties to the higher mean.
    """
    floor = float(spec["criterion"]["min_fraction"])
    scales = [f"{float(s):g}" for s in spec["scales"]]
    runs = {r["name"]: r for r in spec["runs"]}
    scored: dict[str, list[tuple[bool, float, float, str]]] = {}
    for rec in records:
        run = runs.get(rec["name"], {})
        method = run.get("paper")
        if not method or method not in paper or run.get("candidate") is False:
            continue
        frac = fractions(rec, paper[method], scales)
        values = [frac[s] for s in scales]
        ok = all(v >= floor for v in values)
        scored.setdefault(method, []).append(
            (ok, min(values), sum(values) / len(values), rec["name"])
        )
    out: dict[str, tuple[str, str]] = {}
    for method, rows in scored.items():
        passing = [r for r in rows if r[0]]
        if passing:  # max() keeps the first of equal means
            out[method] = (max(passing, key=lambda r: r[2])[3], "criterion")
        else:
            out[method] = (max(rows, key=lambda r: (r[1], r[2]))[3], "maximin")
    return out


def render(records: list[dict], spec: dict, paper: dict | None = None) -> str:
    """Markdown table of every scored run (gains in dB over bicubic), and, when the spec has a
    ``criterion`` and the paper's tables are at hand, each run's fraction of the paper's gain
    and the run the criterion picks per model."""
    scales = [f"{float(s):g}" for s in spec["scales"]]
    sets = ["held-out"] + (["B100"] if int(spec.get("b100_images") or 0) > 0 else [])
    head = ["run", "config", "delta", "steps", "train s", "eval solver"]
    head += [f"{name} x{s}" for name in sets for s in scales]
    holdout = spec["common"]["holdout"]
    where = f"held-out = {holdout['n_images']} {holdout['dataset']} images kept out of training"
    if "B100" in sets:
        where += f"; B100 = its first {spec['b100_images']} images"
    lines = [
        f"# {spec.get('title', 'cpu recipe sweeps')}",
        "",
        f"Generated by `python -m bench.recipe_sweep {spec.get('file', 'SPEC')}` (do not edit by "
        f"hand). Gains in dB of Y-PSNR over bicubic on the same images: {where}. "
        "`train s` is training wall time with one thread on the shared 2-core machine (noisy; "
        "`–` where the run reuses published weights).",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for r in records:
        cells = [r["name"], r["config"], r["delta"].replace("|", "\\|"), str(r["steps"])]
        seconds = r.get("train_seconds")
        cells += ["–" if seconds is None else f"{seconds:.0f}"]
        cells += [json.dumps(r["solver"], separators=(",", ":"))]
        cells += [f"{r[name][s]:+.2f}" for name in sets for s in scales]
        lines.append("| " + " | ".join(cells) + " |")
    if spec.get("criterion") and paper:
        lines += _criterion_lines(records, spec, paper, scales)
    runs = {run["name"]: run for run in spec.get("runs", [])}
    notes = []  # the spec's note where it has one (edited later), else the one recorded
    for r in records:
        note = runs.get(r["name"], {}).get("note") or r.get("note")
        if note:
            notes.append(f"- **{r['name']}**: {note}")
    outro = [spec["outcome"].strip(), ""] if spec.get("outcome") else []
    return "\n".join(lines + [""] + outro + notes) + "\n"


def _criterion_lines(records: list[dict], spec: dict, paper: dict, scales: list[str]) -> list:
    floor = float(spec["criterion"]["min_fraction"])
    runs = {r["name"]: r for r in spec["runs"]}
    lines = [
        "",
        "## Fraction of the paper's gain, and the recipe chosen",
        "",
        f"Held-out gain / the paper's Table 1 gain over bicubic (B100, 100 images) at each scale. "
        f"Criterion: among the runs that reach {floor:.0%} of the paper's gain at every scale "
        "listed, the highest mean fraction. Where none does (the sweep is then the evidence that "
        "no tried recipe reaches the floor), the highest smallest fraction over the scales. Runs "
        "marked as ablations (another model id) are shown but not chosen. The held-out images "
        "are not B100: the fractions are a guide for choosing between recipes (every run is "
        "scored on the same images), not a claim about B100.",
        "",
        "| run | paper's model | " + " | ".join(f"x{s}" for s in scales) + " | mean | all >= "
        f"{floor:.0%} |",
        "|" + "---|" * (len(scales) + 4),
    ]
    for rec in records:
        method = runs.get(rec["name"], {}).get("paper")
        if not method or method not in paper:
            continue
        frac = fractions(rec, paper[method], scales)
        ok = all(frac[s] >= floor for s in scales)
        mean = sum(frac.values()) / len(frac)
        cells = [rec["name"], method] + [f"{frac[s]:.0%}" for s in scales]
        lines.append("| " + " | ".join(cells + [f"{mean:.0%}", "yes" if ok else "no"]) + " |")
    chosen = choose(records, spec, paper)
    lines += ["", "Chosen:", ""]
    for method, (name, rule) in sorted(chosen.items()):
        why = (
            f"the highest mean fraction among the runs at >= {floor:.0%} everywhere"
            if rule == "criterion"
            else f"no run reaches {floor:.0%} at every scale; the highest smallest fraction"
        )
        lines.append(f"- {method}: **{name}** ({why})")
    return lines


def _read_records(jsonl: Path) -> list[dict]:
    if not jsonl.exists():
        return []
    return [json.loads(x) for x in jsonl.read_text(encoding="utf-8").splitlines() if x.strip()]


def _render_to(out: Path, spec: dict, data_root: str | None) -> None:
    """Rewrite OUT.md from every record in OUT.jsonl (other sweep processes append there too)."""
    from bench.report import paper_tables_path

    paper = paper_gains(spec, paper_tables_path(data_root)) if spec.get("criterion") else {}
    records = _read_records(out.with_suffix(".jsonl"))
    if records:
        write_text_atomic(out.with_suffix(".md"), render(records, spec, paper))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.recipe_sweep", description=__doc__)
    parser.add_argument("spec", help="sweep YAML (e.g. bench/sweeps/recipe-cpu.yaml)")
    parser.add_argument("--only", default=None, help="comma list of run names")
    parser.add_argument("--runs", default="runs/sweeps", help="checkpoint folder root")
    parser.add_argument("--out", default=None, help="OUT.jsonl / OUT.md (default: the spec's out)")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--report-only", action="store_true", help="only rewrite OUT.md")
    args = parser.parse_args(argv)
    try:
        spec = yaml.safe_load(Path(args.spec).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        print(f"recipe_sweep: {args.spec}: {exc}", file=sys.stderr)
        return 2
    spec.setdefault("file", args.spec)
    out = Path(args.out or spec.get("out") or "results/cpu/recipe-sweeps")
    jsonl = out.with_suffix(".jsonl")
    only = set(args.only.split(",")) if args.only else None
    cache: dict = {}
    for run in spec["runs"] if not args.report_only else []:
        done = {r["name"] for r in _read_records(jsonl)}
        if run["name"] in done or (only and run["name"] not in only):
            continue
        cfg = run_config(spec, run)
        if run.get("reuse"):
            try:
                final = published_weights(run, cfg)
            except FileNotFoundError as exc:
                print(f"recipe_sweep: {exc}", file=sys.stderr)
                return 2
            seconds = None
            print(f"recipe_sweep: {run['name']}: published weights {final}; scoring", flush=True)
        else:
            run_dir = Path(args.runs) / run["name"]
            print(f"recipe_sweep: {run['name']}: training -> {run_dir}", flush=True)
            seconds = round(_train_run(cfg, run_dir, args.data_root), 1)
            final = run_dir / "final.pt"
            print(f"recipe_sweep: {run['name']}: trained in {seconds:.0f} s; scoring", flush=True)
        rec = {
            "name": run["name"],
            "config": run["config"],
            "delta": _delta_text(run),
            "note": run.get("note", ""),
            "steps": int(cfg["max_steps"]),
            "train_seconds": seconds,
            "threads": torch.get_num_threads(),
            **score(cfg, final, spec, args.data_root, cache),
        }
        out.parent.mkdir(parents=True, exist_ok=True)
        with open(jsonl, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(rec) + "\n")
        _render_to(out, spec, args.data_root)
        print(f"recipe_sweep: {run['name']}: held-out {rec['held-out']}", flush=True)
    _render_to(out, spec, args.data_root)
    return 0


if __name__ == "__main__":
    sys.exit(main())
