"""Experiment configs: the engine's base config, one variant syntax, typed overrides, hash, save.

An experiment file defines ``get_config(arg=None) -> ml_collections.ConfigDict``, built on
:func:`base_config` (the engine's sections, written once); ``arg`` is the text after the colon
(``"quick,cvae"`` in ``experiments/spectrogram.py:quick,cvae``), which the file reads with
:func:`parse_variant`: comma-separated words, each a value of one of the config's variant groups,
or ``group=value``. Files in a folder with an ``__init__.py`` (``experiments/``) are loaded as
modules of that package, so one config builds on another by import.

Overrides come from the command line as ``--config.optim.lr=1e-4``: each value is parsed into the
type of the field it replaces (a tuple keeps its length and its elements' types), and a key that
the config does not have is an :class:`~seisjax.errors.InputError` that names it and the nearest
known keys (a typo must never train silently with the default). The synthetic generator's
scenario configs take the same overrides.

The resolved config (after overrides) is what a run saves as ``config.json`` and what its hash
(:func:`config_hash`) identifies; evaluation reloads it from there.
"""

from __future__ import annotations

import ast
import difflib
import hashlib
import importlib
import importlib.util
import json
import os
import sys
import types
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import ml_collections
from ml_collections import config_dict

from seisjax.errors import InputError

__all__ = ["base_config", "parse_variant", "load_config", "apply_overrides", "parse_override_args",
           "config_to_dict", "config_hash", "save_config", "load_saved_config"]

CONFIG_FILE = "config.json"


# ----------------------------------------------------------------------------- the engine's sections
def base_config() -> ml_collections.ConfigDict:
    """The engine's sections with their defaults; an experiment adds ``task``, ``model`` and
    ``data`` and changes what differs. Keys: :mod:`seisjax.train.loop`, :mod:`seisjax.train.optim`,
    :mod:`seisjax.train.parallel`."""
    placeholder = config_dict.placeholder
    config = ml_collections.ConfigDict()
    config.seed = 0
    config.batch_size = 32   # global, over all devices and hosts
    config.optim = ml_collections.ConfigDict(dict(
        optimizer="adam", b1=0.9, b2=0.999, eps=1e-8, momentum=0.9,
        schedule="stages", stages=((10, 1e-3, 1.0),),   # (epochs, lr, decay per epoch)
        lr=1e-3, warmup_steps=placeholder(int), warmup_epochs=placeholder(float),
        cosine_final_fraction=0.0, clip_norm=0.0, weight_decay=0.0, frozen=()))
    config.train = ml_collections.ConfigDict(dict(
        num_steps=placeholder(int), num_epochs=placeholder(float),
        log_every_steps=20, figure_every_steps=200,
        eval_every_steps=placeholder(int), eval_every_epochs=placeholder(float),
        checkpoint_every_steps=placeholder(int), checkpoint_every_epochs=10.0,
        keep_last=3, best_metric="eval/loss", best_mode="min", async_checkpointing=True))
    config.eval = ml_collections.ConfigDict(dict(batch_size=64))
    config.distributed = ml_collections.ConfigDict(dict(
        coordinator_address="", num_processes=placeholder(int), process_id=placeholder(int), auto=False))
    config.debug = ml_collections.ConfigDict(dict(nan_at_step=-1, step_delay_s=0.0))
    return config


# ----------------------------------------------------------------------------- variants
def parse_variant(arg: str | None, **groups: Sequence[str]) -> types.SimpleNamespace:
    """The variant words after the colon -> one value per group.

    ``groups`` maps each group's name to its values, the first being the default:
    ``parse_variant("quick,stage=pretrain", size=("full", "quick"), stage=("dec", "pretrain"))``
    gives ``namespace(size="quick", stage="pretrain")``. A word is a value of exactly one group, or
    ``group=value``; an unknown word, or two values for one group, is an error listing the known
    ones."""
    chosen: dict[str, str] = {}
    owner = {value: name for name, values in groups.items() for value in values}
    known = "; ".join(f"{name}: {', '.join(values)}" for name, values in groups.items()) or "none"
    for word in filter(None, (w.strip() for w in (arg or "").split(","))):
        name, sep, value = word.partition("=")
        if sep:
            name, value = name.strip(), value.strip()
            if name not in groups or value not in groups[name]:
                raise InputError(f"unknown variant {word!r} (known: {known})")
        elif word in owner:
            name, value = owner[word], word
        else:
            raise InputError(f"unknown variant word {word!r} (known: {known})")
        if name in chosen and chosen[name] != value:
            raise InputError(f"variant {arg!r} gives {name} twice ({chosen[name]} and {value})")
        chosen[name] = value
    return types.SimpleNamespace(**{name: chosen.get(name, values[0]) for name, values in groups.items()})


# ----------------------------------------------------------------------------- loading
def _split_spec(spec: str) -> tuple[str, str | None]:
    """``"experiments/x.py:quick"`` -> (path, "quick"); the variant never contains a path separator."""
    head, sep, tail = spec.rpartition(":")
    if sep and head and "/" not in tail and os.sep not in tail:
        return head, tail or None
    return spec, None


def _resolve_path(path_text: str) -> Path:
    path = Path(path_text)
    if path.suffix != ".py" and not path.exists():  # a bare name: experiments/<name>.py
        path = Path("experiments") / f"{path_text}.py"
    if not path.is_file():
        raise InputError(f"config file {path_text!r} not found (expected experiments/<name>.py[:variant])")
    return path


def _import_config_module(path: Path) -> types.ModuleType:
    """The config file as a module: ``experiments.<name>`` when its folder is a package (so that its
    own imports of sibling configs work), else a module of its own."""
    path = path.resolve()
    if (path.parent / "__init__.py").is_file():
        root, name = str(path.parent.parent), f"{path.parent.name}.{path.stem}"
        if root not in sys.path:
            sys.path.insert(0, root)
        loaded = sys.modules.get(name)
        if loaded is not None and Path(getattr(loaded, "__file__", "")).resolve() != path:
            raise InputError(f"{path}: another module named {name!r} is loaded already "
                             f"({loaded.__file__}); load configs of one checkout per process")
        return importlib.import_module(name)
    name = f"_seisjax_experiment_{path.stem}_{hashlib.sha1(str(path).encode()).hexdigest()[:8]}"
    module_spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def load_config(spec: str, overrides: Sequence[str] | Mapping[str, object] = ()) -> ml_collections.ConfigDict:
    """Load ``path/to/exp.py[:variant]``, call its ``get_config(variant)``, apply overrides, lock it.

    ``overrides`` is a list of ``"a.b=v"`` strings (values parsed into the field's type) or a mapping
    ``{"a.b": value}``. The returned config is locked: adding a key later raises.
    """
    path_text, variant = _split_spec(spec)
    path = _resolve_path(path_text)
    try:
        module = _import_config_module(path)
    except SyntaxError as err:
        raise InputError(f"{path}: syntax error in config file: {err}") from None
    get_config = getattr(module, "get_config", None)
    if get_config is None:
        raise InputError(f"{path}: defines no get_config(arg=None)")
    try:
        config = get_config(variant)
    except ValueError as err:  # e.g. an unknown variant
        raise InputError(f"{path}: {err}") from None
    if not isinstance(config, ml_collections.ConfigDict):
        raise InputError(f"{path}: get_config({variant!r}) returned {type(config).__name__}, "
                         "not an ml_collections.ConfigDict")
    config.lock()
    apply_overrides(config, overrides)
    return config


# ----------------------------------------------------------------------------- overrides
_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def _parse_typed(text: str, kind: type | None, key: str):
    """Parse the command-line text ``text`` into ``kind`` (the type of the field it replaces)."""
    if kind is not str and text.strip() in ("None", "none", "null"):
        return None  # unsets a duration such as train.eval_every_epochs
    try:
        if kind is bool:
            low = text.strip().lower()
            if low in _TRUE or low in _FALSE:
                return low in _TRUE
            raise ValueError(f"expected true or false, got {text!r}")
        if kind is int:
            return int(text)
        if kind is float:
            return float(text)
        if kind is str:
            return text
        if kind in (list, tuple):
            value = ast.literal_eval(text)
            if not isinstance(value, (list, tuple)):
                value = (value,)
            return kind(value)
        if kind is dict:
            value = ast.literal_eval(text)
            if not isinstance(value, dict):
                raise ValueError(f"expected a dict literal, got {text!r}")
            return value
        # An unset (None) field or an unusual type: a Python literal when the text is one, else text.
        try:
            return ast.literal_eval(text)
        except (ValueError, SyntaxError):
            return text
    except (ValueError, SyntaxError) as err:
        type_name = getattr(kind, "__name__", str(kind))
        raise InputError(f"config override {key}={text!r}: cannot parse as {type_name} ({err})") from None


def _known_keys(section: ml_collections.ConfigDict) -> str:
    return ", ".join(sorted(section.keys())) or "(none)"


def _leaf_keys(section, prefix: str = "") -> list[str]:
    keys = []
    for name, value in section.items():
        keys += (_leaf_keys(value, f"{prefix}{name}.") if isinstance(value, ml_collections.ConfigDict)
                 else [f"{prefix}{name}"])
    return keys


def _unknown_key(config, key: str, message: str) -> InputError:
    close = difflib.get_close_matches(key, _leaf_keys(config), n=3)
    return InputError(f"unknown config key {key!r}: {message}" + (f"; did you mean {', '.join(close)}?" if close else ""))


def _locate(config: ml_collections.ConfigDict, key: str) -> tuple[ml_collections.ConfigDict, str]:
    """The section holding the dotted ``key`` and the field's name in it; InputError if unknown."""
    parts = key.split(".")
    if not key or any(not p for p in parts):
        raise InputError(f"config override {key!r}: malformed key")
    section = config
    for depth, part in enumerate(parts[:-1]):
        if part not in section:
            where = ".".join(parts[:depth]) or "the config"
            raise _unknown_key(config, key, f"{where} has no {part!r} (known: {_known_keys(section)})")
        section = section[part]
        if not isinstance(section, ml_collections.ConfigDict):
            raise InputError(f"unknown config key {key!r}: {'.'.join(parts[:depth + 1])} is a value, "
                             "not a section")
    name = parts[-1]
    if name not in section:
        where = ".".join(parts[:-1]) or "the config"
        raise _unknown_key(config, key, f"{where} has no {name!r} (known: {_known_keys(section)})")
    return section, name


def _like(current, value):
    """A tuple ``value`` of ``current``'s length with ints where ``current`` has floats made floats
    (``noise.snr=(1,10)`` stays a pair of floats); anything else unchanged."""
    if (isinstance(current, tuple) and isinstance(value, (tuple, list)) and len(value) == len(current)):
        return tuple(float(v) if isinstance(c, float) and isinstance(v, int) and not isinstance(v, bool) else v
                     for c, v in zip(current, value))
    return value


def apply_overrides(config: ml_collections.ConfigDict,
                    overrides: Sequence[str] | Mapping[str, object]) -> ml_collections.ConfigDict:
    """Set dotted keys in place. Strings ``"a.b=v"`` are parsed into the type of the field they
    replace; mapping values are set as given. Unknown keys raise InputError naming the key."""
    items: Iterable[tuple[str, object, bool]]
    if isinstance(overrides, Mapping):
        items = [(k, v, False) for k, v in overrides.items()]
    else:
        parsed = []
        for text in overrides:
            key, sep, value = text.partition("=")
            if not sep:
                raise InputError(f"config override {text!r}: expected key=value")
            parsed.append((key.strip().removeprefix("--config.").removeprefix("config."), value, True))
        items = parsed
    for key, value, from_text in items:
        section, name = _locate(config, key)
        current = section[name]
        if isinstance(current, ml_collections.ConfigDict):
            raise InputError(f"config override {key!r}: is a section; set its fields instead "
                             f"({_known_keys(current)})")
        if from_text:
            kind = section.get_type(name)
            kind = None if kind is type(None) else kind
            value = _parse_typed(value, kind, key)
        value = _like(current, value)
        try:
            with section.unlocked():
                section[name] = value
        except TypeError as err:
            raise InputError(f"config override {key}={value!r}: {err}") from None
    return config


def parse_override_args(argv: Sequence[str]) -> list[str]:
    """``["--config.a.b=1", "--config.c", "x"]`` -> ``["a.b=1", "c=x"]`` (both spellings accepted)."""
    out, i = [], 0
    while i < len(argv):
        arg = argv[i]
        if not arg.startswith("--config."):
            raise InputError(f"unexpected argument {arg!r} (overrides look like --config.a.b=value)")
        body = arg[len("--config."):]
        if "=" not in body:
            if i + 1 >= len(argv):
                raise InputError(f"config override {arg!r} has no value")
            body, i = f"{body}={argv[i + 1]}", i + 1
        out.append(body)
        i += 1
    return out


# ----------------------------------------------------------------------------- saving and hashing
def _plain(value):
    """JSON-ready copy: tuples -> lists, ConfigDicts/mappings -> dicts with string keys."""
    if isinstance(value, (ml_collections.ConfigDict, Mapping)):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, config_dict.FieldReference):
        return _plain(value.get())
    if isinstance(value, Path):
        return str(value)
    return value


def config_to_dict(config: ml_collections.ConfigDict | Mapping) -> dict:
    """The config as plain JSON types (tuples become lists)."""
    return _plain(config)


def _canonical_json(config) -> str:
    return json.dumps(config_to_dict(config), sort_keys=True, separators=(",", ":"), allow_nan=True)


def config_hash(config) -> str:
    """sha256 of the config's canonical JSON: equal for equal resolved configs, whatever the key
    order or tuple/list spelling, and equal for a config and its reloaded config.json."""
    return hashlib.sha256(_canonical_json(config).encode()).hexdigest()


def save_config(config, workdir: str | os.PathLike) -> Path:
    """Write ``<workdir>/config.json`` (sorted keys, indented) atomically; returns its path."""
    path = Path(workdir) / CONFIG_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(config_to_dict(config), indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)
    return path


def load_saved_config(workdir: str | os.PathLike) -> ml_collections.ConfigDict:
    """The resolved config that a run saved in ``<workdir>/config.json`` (locked)."""
    path = Path(workdir) / CONFIG_FILE
    if not path.is_file():
        raise InputError(f"{path}: no saved config; is {workdir} the workdir of a training run?")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise InputError(f"{path}: not valid JSON ({err})") from None
    config = ml_collections.ConfigDict(data)
    config.lock()
    return config


def diff_configs(old, new) -> list[str]:
    """Dotted keys whose values differ between two configs (added or removed keys included)."""
    a, b = config_to_dict(old), config_to_dict(new)
    out: list[str] = []

    def walk(x, y, prefix):
        if isinstance(x, dict) and isinstance(y, dict):
            for k in sorted(set(x) | set(y)):
                walk(x.get(k, _MISSING), y.get(k, _MISSING), f"{prefix}{k}.")
        elif x != y:
            out.append(prefix.rstrip("."))

    walk(a, b, "")
    return out


_MISSING = object()
