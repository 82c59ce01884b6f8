"""The layers of ``bench``: every module of the package, in one place, lowest layer first.

A module imports only modules of its own layer or of a lower one (at module level or inside a
function), never a higher one, and the imports form no cycle; below ``bench`` come ``baselines``
and, lowest, ``odesr``, which import nothing of ``bench``. ``tests/test_layering.py`` checks
this from the sources and fails on a module of ``bench`` that is not listed here.

* ``core``: experiments resolved into units, the results store, checkpoints, the runner and the
  executors that run them, and the cost plan;
* ``reports``: what ``python -m bench report`` writes from the results (unit means in
  ``summary``, ``captions``, statistics, claims, scaling, the tables in ``report`` and the
  figures in ``report_figures``);
* ``tools``: the commands that nothing imports: one-off measurements (speed, memory,
  reproducibility, device checks), maintenance (publishing weights, the bundled model, data),
  CI checks, and the command line itself (``bench.__main__``).

``python -m bench --help`` lists the commands (the modules here with a ``__main__`` block) with
the first line of their docstrings.
"""

from __future__ import annotations

__all__ = ["LAYERS", "ORDER", "layer_of", "modules"]

LAYERS: dict[str, tuple[str, ...]] = {
    "core": (
        "bench",
        "bench.layers",
        "bench.profile",
        "bench.experiment",
        "bench.results",
        "bench.checkpoints",
        "bench.runner",
        "bench.executors",
        "bench.image_sizes",
        "bench.cost_model",
        "bench.calibrate",
        "bench.price",
        "bench.plan",
        "bench.plan_status",
        "bench.train_all",
    ),
    "reports": (
        "bench.tables",
        "bench.paper",
        "bench.stats",
        "bench.figures",
        "bench.trajectory_figures",
        "bench.summary",
        "bench.captions",
        "bench.claims",
        "bench.ladder_fit",
        "bench.scaling",
        "bench.report_figures",
        "bench.report",
    ),
    "tools": (
        "bench.__main__",
        "bench.bundle",
        "bench.compare_rows",
        "bench.demo",
        "bench.device_check",
        "bench.fetch_data",
        "bench.inference_speed",
        "bench.memory_train_step",
        "bench.multiseed_speed",
        "bench.path_following",
        "bench.peer",
        "bench.publish",
        "bench.quality",
        "bench.recipe_sweep",
        "bench.regress",
        "bench.repro",
        "bench.speed_eval",
        "bench.train_speed",
        "bench.weights_index",
        "bench.benchmarks",
        "bench.benchmarks.conftest",
        "bench.benchmarks.test_hot_paths",
    ),
}
# the packages below bench, lowest first, then bench's own layers
ORDER: tuple[str, ...] = ("odesr", "baselines", *LAYERS)


def modules() -> dict[str, str]:
    """``{module: layer}`` for every module listed in :data:`LAYERS`."""
    return {m: layer for layer, names in LAYERS.items() for m in names}


def layer_of(module: str) -> str | None:
    """The layer of a dotted module name: ``odesr``/``baselines`` for theirs, the layer listed in
    :data:`LAYERS` for bench's, None for a bench module not listed (or anything else)."""
    top = module.split(".")[0]
    if top in ("odesr", "baselines"):
        return top
    return modules().get(module)
