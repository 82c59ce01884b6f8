"""Third-party plugins through entry points: the one loop the model, backbone and solver
registries share."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Container, Iterator
from importlib.metadata import EntryPoint, entry_points
from typing import Any


def load_entry_points(
    group: str,
    known: Container[str],
    kind: str,
    skip: Callable[[EntryPoint], bool] | None = None,
) -> Iterator[tuple[EntryPoint, Any]]:
    """``(entry point, loaded object)`` for each entry point of ``group`` whose name is not in
    ``known`` and that ``skip`` (if given) does not refuse; one that fails to import is skipped
    with a warning naming it (``kind`` plugin), so one broken package does not disable the
    others."""
    for ep in entry_points(group=group):
        if ep.name in known or (skip is not None and skip(ep)):
            continue
        try:
            obj = ep.load()
        except Exception as exc:  # noqa: BLE001 - any import error of a third-party plugin
            warnings.warn(
                f"odesr: {kind} plugin {ep.name!r} ({ep.value}) failed to load: {exc}",
                stacklevel=3,
            )
            continue
        yield ep, obj
