"""The run profile: one checked object, built where a command starts and passed down.

A profile (``smoke``, ``cpu``, ``paper``) is two things, and :class:`Profile` holds both:

* a training recipe: ``odesr/configs/<recipe>.yaml``, from which an experiment's bare model ids
  (``config: vdsr-ode``) are composed (:func:`odesr.config.compose` of ``<recipe>/<model>``);
  ``recipe`` is the profile's name, or None for a profile whose experiment names every config in
  full (the demo's ``demo``);
* the folders a run reads and writes: ``<results>/<name>/`` (the results CSVs, published weights
  in ``weights/``, reports) and ``<checkpoints>/<name>/`` (``<model>-<hash>/`` per trained
  config, submitit's ``jobs/``). The ``profile`` column of every results row is ``name``, and an
  experiment's ``profiles: {name: {...}}`` overrides apply to it.

Every command takes ``--profile``, ``--results`` and ``--checkpoints`` through
:func:`add_profile_arguments` (one name, one default) and builds the object with
:func:`profile_from_args`; a bad value is refused there, before any work, with one line naming the
option (:class:`ProfileError`). Everything below reads the object's fields.
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass
from pathlib import Path

from odesr.config import profiles as recipes

__all__ = [
    "DEFAULT_PROFILE",
    "Profile",
    "ProfileError",
    "add_profile_arguments",
    "profile_from_args",
]

DEFAULT_PROFILE = "cpu"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*\Z")  # a folder name


class ProfileError(ValueError):
    """A profile that cannot be used; the message names the option and the value."""


@dataclass(frozen=True)
class Profile:
    """A run profile: its name, its training recipe and its two folders (checked when built)."""

    name: str
    results_root: Path = Path("results")
    checkpoints_root: Path = Path("checkpoints")
    recipe: str | None = ""  # "": the profile's name; None: no recipe (configs named in full)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise ProfileError(
                f"--profile {self.name!r}: a profile is a folder name (letters, digits, . _ -)"
            )
        recipe = self.name if self.recipe == "" else self.recipe
        if recipe is not None and recipe not in recipes():
            raise ProfileError(
                f"--profile {recipe!r}: no training recipe odesr/configs/{recipe}.yaml "
                f"(profiles: {', '.join(recipes())})"
            )
        object.__setattr__(self, "recipe", recipe)
        for option, value in (
            ("--results", self.results_root),
            ("--checkpoints", self.checkpoints_root),
        ):
            path = Path(value)
            object.__setattr__(self, f"{option[2:]}_root", path)
            for p in (path, path / self.name):
                if p.exists() and not p.is_dir():
                    raise ProfileError(f"{option} {value}: {p} exists and is not a folder")

    # ------------------------------------------------------------------ folders
    @property
    def results(self) -> Path:
        """``<results>/<name>``: results CSVs, reports, ``weights/``."""
        return self.results_root / self.name

    @property
    def checkpoints(self) -> Path:
        """``<checkpoints>/<name>``: one folder per trained config, submitit's ``jobs/``."""
        return self.checkpoints_root / self.name

    @property
    def weights(self) -> Path:
        """``<results>/<name>/weights``: published weights, ``<key>.pt`` each."""
        return self.results / "weights"

    @property
    def jobs(self) -> Path:
        """``<checkpoints>/<name>/jobs``: submitit's job pickles and logs."""
        return self.checkpoints / "jobs"

    def results_csv(self, experiment: str) -> Path:
        """The results CSV of ``experiment``: ``<results>/<name>/<experiment>.csv``."""
        return self.results / f"{experiment}.csv"

    def checkpoint_dir(self, key: str) -> Path:
        """The training folder of the weights ``key`` (``<model>-<hash>``): ``last.pt``,
        ``final.pt``, logs."""
        return self.checkpoints / key

    def published_weights(self, key: str) -> Path:
        """Where :mod:`bench.publish` puts the final weights ``key``."""
        return self.weights / f"{key}.pt"

    # ------------------------------------------------------------------ recipe
    def config_name(self, model: str) -> str:
        """``<recipe>/<model>``: the name :func:`odesr.config.compose` composes; a profile
        without a recipe refuses (one line naming the model)."""
        if self.recipe is None:
            raise ProfileError(
                f"config {model!r}: profile {self.name!r} has no training recipe; name the "
                "config in full (PROFILE/MODEL or a YAML path)"
            )
        return f"{self.recipe}/{model}"


def add_profile_arguments(
    parser: argparse.ArgumentParser,
    *,
    profile: bool = True,
    results: bool = True,
    checkpoints: bool = True,
) -> None:
    """``--profile`` and the folders the command reads (``--results``, ``--checkpoints``): the
    one name and default of each across every command."""
    if profile:
        parser.add_argument(
            "--profile",
            default=DEFAULT_PROFILE,
            help=f"{' | '.join(recipes())} (default {DEFAULT_PROFILE})",
        )
    if results:
        parser.add_argument(
            "--results", default="results", help="results folder (default results/)"
        )
    if checkpoints:
        parser.add_argument(
            "--checkpoints", default="checkpoints", help="checkpoint folder (default checkpoints/)"
        )


def profile_from_args(args: argparse.Namespace) -> Profile:
    """The :class:`Profile` of parsed :func:`add_profile_arguments` options (checked)."""
    return Profile(
        args.profile,
        Path(getattr(args, "results", "results") or "results"),
        Path(getattr(args, "checkpoints", "checkpoints") or "checkpoints"),
    )
