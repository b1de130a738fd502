"""Reading a run config: YAML -> overrides -> typed dataclasses (schema.py) -> validate.py.

Unknown keys, wrong types and impossible combinations raise `UserError` with one line naming the key.
"""

from __future__ import annotations

import dataclasses
import os
import re
import types
import typing
from typing import Any, Literal, Union

import yaml

from ..errors import UserError, did_you_mean
from .hints import hint_elsewhere
from .schema import TASKS, RunConfig, dataclass_of
from .validate import validate


class _Loader(yaml.SafeLoader):
    """YAML 1.1 reads `3e-5` as a string; every learning-rate user expects a float. A key given twice
    in one mapping is an error (PyYAML keeps the last one silently)."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge" or not isinstance(key_node, yaml.ScalarNode):
                    continue  # `<<: *base` may be overridden by the keys after it
                key = self.construct_object(key_node)
                try:
                    first = seen.get(key)
                except TypeError:  # an unhashable key: PyYAML reports it itself
                    continue
                if first is not None:  # also on the same line: `{lr: 1, lr: 2}`
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key!r} (first given on line {first + 1})",
                        key_node.start_mark)
                seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |\.[0-9_]+(?:[eE][-+][0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."))


def _checked(tag):
    """PyYAML raises a bare ValueError for a scalar that looks like a float or date but is not one
    (`._`, `2001-13-45`); report it as a YAML error with its line instead."""
    construct = _Loader.yaml_constructors[tag]

    def wrapped(loader, node):
        try:
            return construct(loader, node)
        except (ValueError, OverflowError) as exc:
            raise yaml.constructor.ConstructorError(
                None, None, f"cannot read {node.value!r} as {tag.rsplit(':', 1)[-1]} ({exc})",
                node.start_mark) from None

    _Loader.add_constructor(tag, wrapped)


for _tag in ("tag:yaml.org,2002:float", "tag:yaml.org,2002:int", "tag:yaml.org,2002:timestamp"):
    _checked(_tag)


def yaml_load(text):
    return yaml.load(text, Loader=_Loader)


def _type_ok(value: Any, tp: Any) -> bool:
    origin = typing.get_origin(tp)
    if tp is Any:
        return True
    if origin in (Union, types.UnionType):
        return any(_type_ok(value, a) for a in typing.get_args(tp))
    if origin is Literal:
        return value in typing.get_args(tp)
    if tp is type(None):
        return value is None
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin in (list, dict):
        return isinstance(value, origin)
    if isinstance(tp, type):
        return isinstance(value, tp)
    return True


def _describe(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(tp))
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


def _build(cls, raw: Any, where: str):  # keys are echoed with !r: one line whatever they hold
    if not isinstance(raw, dict):
        raise UserError(f"config: {where or 'top level'!r} must be a mapping, got {type(raw).__name__}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in raw.items():
        path = f"{where}.{key}" if where else str(key)
        if key not in names or key == "source_path":
            raise UserError(f"config: unknown key {path!r}"
                            f"{hint_elsewhere(key, where) or did_you_mean(str(key), names)}")
        tp = hints[key]
        sub = dataclass_of(tp)
        if sub is not None and value is not None:
            kwargs[key] = _build(sub, {} if value is True else value, path)
        elif not _type_ok(value, tp):
            raise UserError(f"config: {path!r} must be {_describe(tp)}, got {value!r}")
        else:
            kwargs[key] = value
    missing = [f.name for f in dataclasses.fields(cls)
               if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
               and f.name not in kwargs]
    if missing:
        raise UserError(f"config: missing required key '{(where + '.') if where else ''}{missing[0]}'")
    return cls(**kwargs)


# how a value starts when it is YAML's syntax rather than text: a flow list or mapping, a quoted string, a
# tag (`!!python/object`), an anchor or alias, a block scalar
_YAML_SYNTAX = tuple("[{\"'!&*|>")


def parse_override(text: str) -> tuple[list[str], Any]:
    """`a.b.c=value` -> (['a','b','c'], value parsed as YAML). Text YAML cannot read, or reads as a block
    mapping (`a.b=x: y`, `a.b=see: a: b`), is that text: colons and spaces need no quotes. A value written
    in YAML's syntax that YAML refuses (`[1,`, an unclosed quote, a `!!python/...` tag) is a mistake, not
    text: taken as text it would become, say, a folder named after it."""
    if "=" not in text:
        raise UserError(f"override {text!r}: expected dotted.key=value")
    key, value = text.split("=", 1)
    if not key or any(not p for p in key.split(".")):
        raise UserError(f"override {text!r}: empty key")
    if value == "":
        return key.split("."), ""
    try:
        parsed = yaml_load(value)
    except yaml.YAMLError as exc:
        if value.lstrip().startswith(_YAML_SYNTAX):
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise UserError(f"override {text!r}: the value is not valid YAML ({problem}); for a text value "
                            f"quote it: {key}='\"...\"'") from None
        return key.split("."), value
    if isinstance(parsed, dict) and not value.lstrip().startswith("{"):
        return key.split("."), value  # `x: y` is text with a colon; a mapping is written {x: y}
    return key.split("."), parsed


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    for text in overrides or []:
        keys, value = parse_override(text)
        node = raw
        for i, k in enumerate(keys[:-1]):
            if node.get(k) is None:
                node[k] = {}
            if not isinstance(node[k], dict):
                raise UserError(f"override {text!r}: {'.'.join(keys[:i + 1])!r} is not a mapping")
            node = node[k]
        node[keys[-1]] = value
    return raw


def read_yaml(path: str) -> dict:
    if os.path.isdir(path):
        raise UserError(f"config: {path} is a directory, not a YAML file")
    if not os.path.isfile(path):
        raise UserError(f"config file not found: {path}")
    try:
        with open(path, encoding="utf-8") as fh:
            raw = yaml_load(fh)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise UserError(f"{path}:{where}: malformed YAML: {problem}") from None
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise UserError(f"{path}: the config must be a YAML mapping, got {type(raw).__name__}")
    return raw


def from_dict(raw: dict, base_dir: str = ".") -> RunConfig:
    if "task" not in raw:
        raise UserError(f"config: missing required key 'task' (one of {', '.join(TASKS)})")
    if raw["task"] not in TASKS:
        raise UserError(f"config: 'task' must be one of {', '.join(TASKS)}, got {raw['task']!r}"
                        f"{did_you_mean(str(raw['task']), TASKS)}")
    from .train_values import read_no_as_string, reconcile_top_level

    reconcile_top_level(raw)  # train.seed equal to (or instead of) the top-level seed
    if isinstance(raw.get("train"), dict):
        read_no_as_string(raw["train"])  # `save_strategy: no` is YAML's false
    cfg = _build(RunConfig, raw, "")
    _resolve_paths(cfg, base_dir)
    validate(cfg)
    return cfg


def saved(path: str) -> RunConfig:
    """The run_config.yaml a run wrote, read back as it is: type-checked, not validated again (its data
    files may be gone since; serving or exporting the trained model needs none of them)."""
    raw = read_yaml(path)
    if raw.get("task") not in TASKS:
        raise UserError(f"{path}: not a trainsuite run config (task {raw.get('task')!r})")
    from .train_values import read_no_as_string

    source = raw.pop("source_path", None)  # written by the run, not a key a config file sets
    if isinstance(raw.get("train"), dict):
        read_no_as_string(raw["train"])
    cfg = _build(RunConfig, raw, "")
    cfg.source_path = source
    return cfg


def load(path: str, overrides: list[str] | None = None) -> RunConfig:
    """Read, override, type-check and validate a run config. Raises UserError."""
    raw = apply_overrides(read_yaml(path), overrides or [])
    cfg = from_dict(raw, base_dir=os.path.dirname(os.path.abspath(path)))
    cfg.source_path = os.path.abspath(path)
    cfg.source_overrides = list(overrides or [])  # not a config key: repeated in "continue with" hints
    return cfg


def _resolve_paths(cfg: RunConfig, base_dir: str) -> None:
    """Relative data paths are read relative to the config file when they exist there."""

    def fix(p):
        if isinstance(p, dict):
            return {k: fix(v) for k, v in p.items()}
        if isinstance(p, str) and not os.path.isabs(p) and not os.path.exists(p):
            cand = os.path.join(base_dir, p)
            if os.path.exists(cand):
                return cand
        return p

    cfg.data.train = fix(cfg.data.train)
    cfg.data.eval = fix(cfg.data.eval)
    if cfg.sweep is not None and cfg.sweep.holdout is not None:
        cfg.sweep.holdout = fix(cfg.sweep.holdout)
