"""Training configs composed from ``odesr/configs``, strict keys, and the one override mechanism.

Layout of ``odesr/configs`` (see ``bench/README.md``):

* ``{profile}.yaml`` (``smoke``, ``cpu``, ``paper``): ``base`` (keys every model of the profile
  shares), ``groups`` (named deltas several models share, e.g. the VDSR family's budget or the
  ODE models' training solver) and ``models`` (deltas of one model in this profile only).
* ``models.yaml``: model id -> the delta that holds in every profile, with ``groups: [names]``.

The effective config of ``PROFILE/MODEL`` is the deep merge (mappings merge key by key, any other
value replaces) of ``DEFAULTS`` <- ``base`` <- each group in the model's order <- the model's
``models.yaml`` entry <- the profile's ``models`` entry.

Overrides (``odesr train --set``, an experiment model's ``train:``): ``{dotted.key: value}``; the
value replaces whatever the key held (a mapping too), and the keys a replaced mapping leaves out
come from ``DEFAULTS``.

Keys are strict: a key that ``DEFAULTS`` does not have is refused (:class:`ConfigError` naming it),
and a value whose default is a number, a bool, a string or a list must be one. Mappings that are
free-form by design (``OPEN_KEYS``: the model spec, solver options) are not checked inside. To add
a key (e.g. a recipe setting), add it with its default to ``odesr.train_config.DEFAULTS`` and set
it in a profile's ``base`` or a group.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "CONFIG_DIR",
    "OPEN_KEYS",
    "CHOICES",
    "ConfigError",
    "apply_overrides",
    "check_keys",
    "compose",
    "config_names",
    "deep_merge",
    "parse_set",
    "profiles",
    "read_yaml",
    "load_yaml_text",
    "MAX_YAML_BYTES",
    "MAX_YAML_DEPTH",
    "split_name",
    "weights_hash",
]

CONFIG_DIR = Path(__file__).with_name("configs")
MODELS_FILE = "models.yaml"
OPEN_KEYS = frozenset({"model", "train_solver", "val.solver"})  # free-form mappings
# keys that take one of a few values of mixed types (checked instead of the default's type)
CHOICES: dict[str, tuple[Any, ...]] = {
    # activation checkpointing of the training solve (odesr.ode.solve's checkpoint): false,
    # true/step (per solver step), eval (per function evaluation: big backbones)
    "checkpoint_recompute": (False, True, "step", "eval"),
}
_PROFILE_KEYS = frozenset({"base", "groups", "models"})
# The weights key hashes what changes the weights: the config (seed included) and the recipe
# version. Keys that existed when the key was introduced always count; a key added since counts
# only when its value differs from the one that reproduces the earlier training (LEGACY_VALUES),
# so adding a setting keeps every existing checkpoint and results row valid.
V1_KEYS = frozenset(
    """adam align_grid batch_size channels_last checkpoint_every checkpoint_recompute data
    log_every lr lr_halve_every max_steps model objective patch_size path preload scales seed
    train_solver val""".split()
)
LEGACY_VALUES: dict[str, Any] = {
    "recipe": "1",
    # training-recipe keys of issue 9, at the values that train as before
    "lr_schedule": "step",
    "warmup_steps": 0,
    "grad_clip": 0.0,
    "ema": 0.0,
    "mixed_scales": False,
    "holdout": {"dataset": None, "n_images": 0},
    "scale_weight": "none",  # odesr.scale_weight
}


class ConfigError(ValueError):
    """A config that cannot be used; the message names the file, key or value."""


def deep_merge(base: dict, over: Mapping) -> dict:
    """``base`` updated recursively with ``over`` (dicts merged, the rest replaced); a copy."""
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


MAX_YAML_BYTES = 1 << 20  # a config or experiment file is a few kB
MAX_YAML_DEPTH = 32  # nested mappings/lists (the deepest shipped file has 5)


class _Refused(yaml.MarkedYAMLError):
    """Valid YAML that odesr does not take (an alias, too deep)."""


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader that refuses aliases (``*name``: no alias bombs; no odesr file uses
    anchors) and nesting deeper than :data:`MAX_YAML_DEPTH` (before Python's recursion limit)."""

    _depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark
            raise _Refused(
                problem="aliases (*name) are not supported; write the value out",
                problem_mark=mark,
            )
        self._depth += 1
        try:
            if self._depth > MAX_YAML_DEPTH:
                raise _Refused(
                    problem=f"nested more than {MAX_YAML_DEPTH} levels deep",
                    problem_mark=self.peek_event().start_mark,
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def load_yaml_text(text: str, where: str) -> Any:
    """Parse YAML ``text`` with the bounded safe loader: at most :data:`MAX_YAML_BYTES`, no
    aliases, at most :data:`MAX_YAML_DEPTH` levels. Errors: one-line :class:`ConfigError`
    naming ``where`` (a file, a ``--set`` key) and the line."""
    if len(text) > MAX_YAML_BYTES:
        raise ConfigError(
            f"{where}: more than {MAX_YAML_BYTES} characters of YAML (the limit; odesr's YAML "
            "files are a few kB)"
        )
    loader = _BoundedLoader(text)
    try:
        return loader.get_single_data()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where_at = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        what = "YAML refused" if isinstance(exc, _Refused) else "YAML syntax error"
        raise ConfigError(f"{where}: {what}{where_at}: {problem}") from None
    except RecursionError:  # pragma: no cover - the depth bound comes first
        raise ConfigError(f"{where}: YAML nested too deeply") from None
    finally:
        loader.dispose()


# parsed YAML by the file's text: composing one experiment reads the same few config files
# hundreds of times, and PyYAML's parser dominated that time
_PARSED: dict[str, Any] = {}


def read_yaml(path: str | os.PathLike) -> dict:
    """A YAML file holding a mapping (empty file: ``{}``); syntax errors as one-line ConfigError.

    Each call reads the file and returns its own copy (text parsed before is not parsed again)."""
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read(MAX_YAML_BYTES + 1)
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError(f"{path}: cannot read ({why or exc})") from None
    if text not in _PARSED:
        _PARSED[text] = load_yaml_text(text, str(path))
    doc = copy.deepcopy(_PARSED[text])
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: expected a mapping of keys, got {type(doc).__name__}")
    return doc


def _type_error(key: str, value: Any, default: Any) -> ConfigError:
    kind = {bool: "true/false", int: "an integer", float: "a number", str: "a string"}.get(
        type(default), type(default).__name__
    )
    return ConfigError(f"{key}: expected {kind}, got {value!r}")


def _is_number(value: Any) -> bool:
    """A finite int or float (not a bool)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return value == value and abs(value) != float("inf")


def _checked_value(key: str, value: Any, default: Any) -> Any:
    """``value`` if it has the default's type (a number for floats, text like '1e-4' included)
    or, for a key of :data:`CHOICES`, is one of its values."""
    if key in CHOICES:
        if not any(type(value) is type(c) and value == c for c in CHOICES[key]):
            shown = ", ".join(str(c).lower() for c in CHOICES[key])
            raise ConfigError(f"{key}: expected one of {shown}, got {value!r}")
        return value
    if default is None or value is None:
        return value
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise _type_error(key, value, default)
    elif isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise _type_error(key, value, default)
    elif isinstance(default, float):
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                raise _type_error(key, value, default) from None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _type_error(key, value, default)
    elif isinstance(default, str):
        if not isinstance(value, str):
            raise _type_error(key, value, default)
    elif isinstance(default, list):
        if not isinstance(value, list | str):  # a single name for a list of names
            raise _type_error(key, value, default)
        numbers = bool(default) and all(_is_number(d) for d in default)
        if numbers and isinstance(value, list):  # a list of numbers holds numbers only
            if not value or not all(_is_number(v) for v in value):
                raise ConfigError(f"{key}: expected a list of numbers, got {value!r}")
    elif isinstance(default, dict) and not isinstance(value, dict):
        raise ConfigError(f"{key}: expected a mapping, got {value!r}")
    return value


def check_keys(doc: Mapping, schema: Mapping, where: str = "", prefix: str = "") -> dict:
    """``doc`` with every key known to ``schema`` (recursively) and typed like its default.

    Raises :class:`ConfigError` naming the first unknown key (``where: unknown key 'a.b'``) or
    badly typed value. Returns a copy (float-typed text such as ``'1e-4'`` converted)."""
    out = {}
    for key, value in doc.items():
        dotted = f"{prefix}{key}"
        if key not in schema:
            known = ", ".join(sorted(map(str, schema)))
            raise ConfigError(f"{where}unknown key {dotted!r} (known: {known})")
        default = schema[key]
        value = _checked_value(dotted, value, default)
        if isinstance(value, dict) and default and dotted not in OPEN_KEYS:
            value = check_keys(value, default, where, dotted + ".")
        out[key] = copy.deepcopy(value)
    return out


def parse_set(items: Sequence[str]) -> dict[str, Any]:
    """``["a.b=VALUE", ...]`` (YAML values) -> ``{"a.b": value}``; a malformed item is refused."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE")
        key, text = item.split("=", 1)
        try:
            out[key.strip()] = load_yaml_text(text, f"--set {key.strip()}")
        except ConfigError as exc:
            raise ConfigError(f"{exc} (value {text[:80]!r})") from None
    return out


def _check_path(keys: list[str], schema: Mapping) -> None:
    spec: Any = schema
    for depth, key in enumerate(keys):
        if ".".join(keys[:depth]) in OPEN_KEYS:
            return
        if not isinstance(spec, Mapping) or key not in spec:
            raise ConfigError(f"unknown key {'.'.join(keys[: depth + 1])!r}")
        spec = spec[key]


def apply_overrides(doc: dict, overrides: Mapping[str, Any], schema: Mapping | None = None) -> dict:
    """``doc`` with each ``dotted.key: value`` replacing what the key held (a copy).

    With ``schema``, every key must be known to it; without, the path up to the last key must
    already exist in ``doc`` (experiments: a typo is refused, never silently added)."""
    out = copy.deepcopy(doc)
    for dotted, value in overrides.items():
        keys = str(dotted).split(".")
        if schema is not None:
            _check_path(keys, schema)
        node = out
        for depth, key in enumerate(keys[:-1]):
            path = ".".join(keys[: depth + 1])
            if node.get(key) is None and schema is not None:
                node[key] = {}
            if key not in node:
                raise ConfigError(f"unknown key {path!r}")
            if not isinstance(node[key], dict):
                raise ConfigError(f"{path}: not a mapping, cannot set {dotted!r}")
            node = node[key]
        node[keys[-1]] = copy.deepcopy(value)
    return out


def weights_hash(cfg: Mapping) -> str:
    """Short stable hash of what a training config trains (the checkpoint key; see V1_KEYS)."""
    import hashlib
    import json

    kept = {
        k: v
        for k, v in cfg.items()
        if k in V1_KEYS or k not in LEGACY_VALUES or v != LEGACY_VALUES[k]
    }
    text = json.dumps(kept, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:10]


# ----------------------------------------------------------------------------- composition


def profiles() -> list[str]:
    """Profile names: the ``{profile}.yaml`` files of ``odesr/configs``."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml") if p.name != MODELS_FILE)


def _models_doc() -> dict:
    return read_yaml(CONFIG_DIR / MODELS_FILE)


def config_names() -> list[str]:
    """Every composable ``PROFILE/MODEL`` name."""
    models = sorted(_models_doc())
    return [f"{profile}/{model}" for profile in profiles() for model in models]


def split_name(name: str | os.PathLike) -> tuple[str, str] | None:
    """``(profile, model)`` when ``name`` is a composed name like ``cpu/vdsr-ode``, else None."""
    text = str(name)
    if text.endswith((".yaml", ".yml")) or Path(text).is_file() or text.count("/") != 1:
        return None
    profile, model = text.split("/")
    return (profile, model) if profile in profiles() else None


def compose(profile: str, model: str, defaults: Mapping) -> dict:
    """The effective config of ``profile/model`` (see the module docstring), keys checked."""
    if profile not in profiles():
        raise ConfigError(f"unknown profile {profile!r} (known: {', '.join(profiles())})")
    models = _models_doc()
    if model not in models:
        raise ConfigError(f"unknown model {model!r} (known: {', '.join(sorted(models))})")
    prof_path = CONFIG_DIR / f"{profile}.yaml"
    prof = read_yaml(prof_path)
    unknown = set(prof) - _PROFILE_KEYS
    if unknown:
        key = sorted(unknown)[0]
        raise ConfigError(f"{prof_path}: unknown key {key!r} (known: base, groups, models)")
    entry = dict(models[model] or {})
    group_names = entry.pop("groups", []) or []
    layers = [(str(prof_path), prof.get("base") or {})]
    groups = prof.get("groups") or {}
    known = {g for p in profiles() for g in read_yaml(CONFIG_DIR / f"{p}.yaml").get("groups") or {}}
    for group in group_names:
        if group not in known:
            raise ConfigError(f"{CONFIG_DIR / MODELS_FILE}: {model}: unknown group {group!r}")
        if group in groups:  # else a group this profile leaves as it is
            layers.append((f"{prof_path} groups.{group}", groups[group] or {}))
    layers.append((f"{CONFIG_DIR / MODELS_FILE} {model}", entry))
    layers.append((f"{prof_path} models.{model}", (prof.get("models") or {}).get(model) or {}))
    cfg = copy.deepcopy(dict(defaults))
    for where, layer in layers:
        cfg = deep_merge(cfg, check_keys(layer, defaults, f"{where}: "))
    return cfg
