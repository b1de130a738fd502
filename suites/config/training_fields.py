"""The fields of transformers.TrainingArguments (the keys `train:` takes) and their annotations, read from
transformers' source file instead of importing it.

Why: importing transformers.training_args costs 9 s of CPU (torch, peft, bitsandbytes come with it), and
the config check of every command needs these names (an unknown `train:` key, a misplaced key's hint, a
value of the wrong type) before anything heavy is imported: a typo is reported in a fraction of a second.
The class is one flat dataclass of annotated fields, so its source says all we need; where it does not
look like that (another transformers layout), the class is imported as before. tests/test_config.py
checks that both ways give the same fields and types for the installed transformers.
"""

from __future__ import annotations

import ast
import dataclasses
import enum
import functools
import importlib.util
import os
import typing


class Choice(str, enum.Enum):
    """Stands in for one of transformers' string enums (IntervalStrategy, SchedulerType ...): a string."""


class Opaque:
    """Stands in for any other class named by an annotation (ParallelismConfig ...): not checked."""


_PLAIN = {"str": str, "int": int, "float": float, "bool": bool, "list": list, "dict": dict, "List": list,
          "Dict": dict, "Any": typing.Any, "tuple": tuple, "Tuple": tuple}


@dataclasses.dataclass(frozen=True)
class Fields:
    names: frozenset  # the init fields: what TrainingArguments(**train) accepts
    types: dict  # field -> annotation as a typing object (enums as Choice, other classes as Opaque)


@functools.lru_cache(maxsize=None)
def training_fields() -> Fields:
    try:
        found = _from_source()
    except (OSError, SyntaxError, ValueError):
        found = None
    return found or _from_import()


def _from_import() -> Fields:
    from transformers import TrainingArguments

    try:
        types = typing.get_type_hints(TrainingArguments)
    except Exception:  # noqa: BLE001 - an annotation this Python cannot resolve: types are left to transformers
        types = {}
    return Fields(frozenset(f.name for f in dataclasses.fields(TrainingArguments) if f.init), types)


def _package_dir() -> str | None:
    spec = importlib.util.find_spec("transformers")  # finds the package; imports nothing of it
    locations = list(spec.submodule_search_locations or []) if spec else []
    return locations[0] if locations else None


def _parse(path: str) -> ast.Module:
    with open(path, encoding="utf-8") as fh:
        return ast.parse(fh.read(), path)


def _from_source() -> Fields | None:
    package = _package_dir()
    if package is None:
        return None
    tree = _parse(os.path.join(package, "training_args.py"))
    cls = next((n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "TrainingArguments"), None)
    if cls is None or cls.bases or not any(_name(d) == "dataclass" for d in cls.decorator_list):
        return None  # not the one flat dataclass this reader knows
    enums = _enum_names(tree, package)
    names, types = set(), {}
    for node in cls.body:
        if not isinstance(node, ast.AnnAssign) or not isinstance(node.target, ast.Name):
            continue
        if _name(node.annotation) == "ClassVar" or _is_init_false(node.value):
            continue
        names.add(node.target.id)
        types[node.target.id] = _annotation(node.annotation, enums)
    return Fields(frozenset(names), types) if names else None


def _name(node) -> str | None:
    node = node.func if isinstance(node, ast.Call) else node
    node = node.value if isinstance(node, ast.Subscript) else node
    if isinstance(node, ast.Attribute):
        return node.attr
    return node.id if isinstance(node, ast.Name) else None


def _is_init_false(value) -> bool:
    return isinstance(value, ast.Call) and any(
        k.arg == "init" and isinstance(k.value, ast.Constant) and k.value.value is False for k in value.keywords)


def _enum_classes(tree: ast.Module) -> set[str]:
    return {n.name for n in tree.body if isinstance(n, ast.ClassDef)
            and any((_name(b) or "").endswith("Enum") for b in n.bases)}


def _enum_names(tree: ast.Module, package: str) -> set[str]:
    """Names of the enums the module defines or imports from a module of its own package
    (`from .trainer_utils import IntervalStrategy`)."""
    found = _enum_classes(tree)
    for node in tree.body:
        if not isinstance(node, ast.ImportFrom) or node.level != 1 or not node.module:
            continue
        path = os.path.join(package, *node.module.split(".")) + ".py"
        if os.path.isfile(path):
            found |= {a.asname or a.name for a in node.names} & _enum_classes(_parse(path))
    return found


def _annotation(node, enums: set[str]):
    """An annotation's AST as the typing object get_type_hints would give, enums and classes stood in for."""
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return typing.Union[_annotation(node.left, enums), _annotation(node.right, enums)]
    if isinstance(node, ast.Constant):
        if node.value is None:
            return type(None)
        if isinstance(node.value, str):  # a quoted annotation
            return _annotation(ast.parse(node.value, mode="eval").body, enums)
        return Opaque
    if isinstance(node, ast.Subscript):
        base = _name(node.value)
        args = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
        if base == "Literal" and all(isinstance(a, ast.Constant) for a in args):
            return typing.Literal[tuple(a.value for a in args)]
        if base == "Optional":
            return typing.Optional[_annotation(args[0], enums)]
        if base == "Union":
            return typing.Union[tuple(_annotation(a, enums) for a in args)]
        return _PLAIN.get(base, Opaque)  # list[str], dict[str, Any]: the container is what is checked
    name = _name(node)
    if name in _PLAIN:
        return _PLAIN[name]
    return Choice if name in enums else Opaque
