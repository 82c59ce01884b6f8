"""The index of the published weights, ``<results>/<profile>/weights/index.csv``: which model name
and training seed each weights file is, which experiments use it, how it was trained, and its
measured gain over bicubic on B100.

    python -m bench.weights_index [--profile cpu] [--results results] [--check]

One row per (model name, weights file): the name is the experiment's model id (``vdsr-ode``,
``vdsr-ode-euler1``, ``vdsr+t-compute``, ...; one network per scale: ``rdn-fixed-x2``); a file that
several ids name (``vdsr-ode`` and ``vdsr-ode-rk4``) has a row for each; a self-ensemble id
(``rdn-ode+``) is no name of its own (``odesr`` loads the plain network). A file no experiment
names is listed under its weights key. ``odesr.load_model(name, seed=k)`` and ``odesr eval
--model NAME --seed K`` read this file (:mod:`odesr.published`); its columns are
:data:`odesr.published.INDEX_COLUMNS`:

* ``experiments``: the experiments whose plans use the file (space separated);
* ``recipe``, ``steps``: the training config's ``recipe`` and the step the weights are from;
* ``trained_on``: the machines of the checkpoint's ``trained_on`` record (``not recorded`` for
  weights trained before checkpoints kept it);
* ``b100_images``, ``b100_gain_x2``, ``b100_gain_x4``: from the committed rows of the results
  CSVs of the profile: the rows of the file's weights key on B100 (any model id that names it;
  no self-ensemble; the solver setting with the most rows), minus bicubic on the same image,
  scale, protocol and luma rounding, averaged over the images (dB, 3 decimals; images: their
  count at x2/x4); empty where no such rows exist.
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
from pathlib import Path

import pandas as pd

from bench.experiment import EXPERIMENT_DIR, ModelPlan, load_experiment
from bench.profile import Profile, ProfileError, add_profile_arguments, profile_from_args
from bench.report import load_results
from odesr.cli import HelpFormatter
from odesr.io import write_text_atomic
from odesr.published import INDEX_COLUMNS, INDEX_NAME
from odesr.train_state import read_checkpoint

__all__ = ["GAIN_DATASET", "GAIN_SCALES", "index_path", "build_index", "index_text", "main"]

GAIN_DATASET = "B100"
GAIN_SCALES = (2.0, 4.0)
BICUBIC_WEIGHTS = '{"name": "bicubic"}'  # the ``weights`` column of bicubic rows


def index_path(profile: Profile) -> Path:
    return profile.weights / INDEX_NAME


def _name(plan: ModelPlan) -> str:
    """The model name of a plan: its id, with ``-x<scale>`` for one network per scale; an entry
    that trains a config as it is (no ``train`` overrides, no budget ladder) is named by that
    config (the claims' ``vdsr-ode`` entry trains ``vdsr-ode-unweighted`` at the cpu profile)."""
    if "config_per_scale" in plan.entry and plan.only_scales and len(plan.only_scales) == 1:
        return f"{plan.id}-x{plan.only_scales[0]:g}"
    config = plan.entry.get("config")
    if config and not plan.entry.get("train") and not plan.entry.get("train_steps"):
        return str(config)
    return plan.id


def _trained_on(extra: dict) -> str:
    """The machines a checkpoint's ``trained_on`` segments name, in order."""
    devices = [str(seg.get("device", "?")) for seg in extra.get("trained_on") or []]
    return " then ".join(dict.fromkeys(devices)) if devices else "not recorded"


def _results_rows(profile: Profile) -> pd.DataFrame:
    """Every committed B100 row at the gain scales in ``<results>/<profile>/*.csv``."""
    frames = []
    for path in sorted(profile.results.glob("*.csv")):
        head = path.open(encoding="utf-8").readline()
        if "weights" not in head.split(",") or "psnr" not in head.split(","):
            continue
        df = load_results(path)
        df = df[(df["dataset"] == GAIN_DATASET) & df["scale"].isin(GAIN_SCALES)]
        frames.append(df)
    if not frames:
        return pd.DataFrame(columns=["model", "weights", "image", "scale", "psnr"])
    df = pd.concat(frames, ignore_index=True)
    if "ensemble" not in df:
        df["ensemble"] = ""
    return df


def _gains(rows: pd.DataFrame, key: str) -> tuple[str, dict[float, str]]:
    """(images per scale, {scale: mean gain over bicubic}) of the weights ``key``."""
    mine = rows[(rows["weights"] == key) & (rows["ensemble"] == "")]
    if mine.empty:
        return "", {}
    solver = mine["solver_opts"].value_counts().index[0]
    mine = mine[mine["solver_opts"] == solver]
    base = rows[rows["weights"] == BICUBIC_WEIGHTS]
    on = ["image", "scale", "protocol", "y_rounding"]
    ours = mine.groupby(on, as_index=False)["psnr"].mean()
    ref = base.groupby(on, as_index=False)["psnr"].mean()
    pairs = ours.merge(ref, on=on, suffixes=("", "_bicubic"))
    pairs["gain"] = pairs["psnr"] - pairs["psnr_bicubic"]
    gains = {float(s): f"{g:.3f}" for s, g in pairs.groupby("scale")["gain"].mean().items()}
    counts = pairs.groupby("scale")["image"].nunique()
    images = "/".join(str(int(counts[s])) if s in counts.index else "-" for s in GAIN_SCALES)
    return images, gains


def build_index(profile: Profile, experiments: list[str] | None = None) -> list[dict]:
    """The index rows of every weights file published under ``<results>/<profile>/weights``
    (sorted by model name, then seed); ``experiments``: the names whose models name the files
    (default: every experiment under ``bench/experiments``)."""
    folder = profile.weights
    files = {p.stem: p for p in sorted(folder.glob("*.pt"))}
    names: dict[str, list[str]] = {}  # weights key -> model names
    used_by: dict[str, list[str]] = {}  # weights key -> experiments
    if experiments is None:
        experiments = [p.stem for p in sorted(EXPERIMENT_DIR.glob("*.yaml"))]
    for experiment in experiments:
        exp = load_experiment(experiment)
        for plan in exp.all_plans(profile):
            key = plan.key
            if not plan.trained or key not in files:
                continue
            used_by.setdefault(key, [])
            if exp.name not in used_by[key]:
                used_by[key].append(exp.name)
            if plan.ensemble is None and _name(plan) not in names.setdefault(key, []):
                names[key].append(_name(plan))
    rows_db = _results_rows(profile)
    out = []
    for key, path in files.items():
        _, extra = read_checkpoint(path)
        cfg = extra.get("config") or {}
        images, gains = _gains(rows_db, key)
        for name in names.get(key) or [key]:
            out.append(
                {
                    "file": path.name,
                    "model": name,
                    "seed": int(cfg.get("seed", 0)),
                    "experiments": " ".join(used_by.get(key, [])),
                    "recipe": cfg.get("recipe", ""),
                    "steps": extra.get("step", cfg.get("max_steps", "")),
                    "trained_on": _trained_on(extra),
                    "b100_images": images,
                    **{f"b100_gain_x{s:g}": gains.get(s, "") for s in GAIN_SCALES},
                }
            )
    seen: dict[tuple[str, int], str] = {}
    for row in out:
        other = seen.setdefault((row["model"], row["seed"]), row["file"])
        if other != row["file"]:
            raise ValueError(
                f"two weights files are {row['model']} seed {row['seed']}: {other}, {row['file']}"
            )
    return sorted(out, key=lambda r: (r["model"], r["seed"]))


def index_text(rows: list[dict]) -> str:
    """The CSV text of the index (``\\n`` line ends)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(INDEX_COLUMNS), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.weights_index", description=__doc__, formatter_class=HelpFormatter
    )
    add_profile_arguments(parser, checkpoints=False)
    parser.add_argument(
        "--experiments",
        default=None,
        help="comma list of the experiments whose model names are used (default: all)",
    )
    parser.add_argument(
        "--check", action="store_true", help="only compare with the file; exit 1 when it differs"
    )
    args = parser.parse_args(argv)
    try:
        profile = profile_from_args(args)
    except ProfileError as exc:
        print(f"bench.weights_index: {exc}", file=sys.stderr)
        return 2
    path = index_path(profile)
    names = args.experiments.split(",") if args.experiments else None
    text = index_text(build_index(profile, names))
    if args.check:
        same = path.is_file() and path.read_text(encoding="utf-8") == text
        print(f"bench.weights_index: {path} {'is current' if same else 'differs'}")
        return 0 if same else 1
    write_text_atomic(path, text)
    print(f"bench.weights_index: {text.count(chr(10)) - 1} rows -> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
