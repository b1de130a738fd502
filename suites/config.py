"""The run config: YAML -> typed dataclasses, validated before any model loads.

Every section is a dataclass; unknown keys, wrong types and impossible combinations raise
`UserError` with one line naming the key. `train:` holds transformers.TrainingArguments fields.
"""

from __future__ import annotations

import dataclasses
import os
import re
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal, Optional, Union

import yaml

from .errors import UserError, did_you_mean

TASKS = ("classification", "seq2seq", "sft")
# Keys of `train:` that the suite owns and sets itself.
RESERVED_TRAIN_KEYS = {"output_dir": "output_dir (top level)", "seed": "seed (top level)"}


@dataclass
class ModelConfig:
    name_or_path: Optional[str] = None  # hub name, local dir, or package:<module>/<subdir>
    from_config: Optional[dict] = None  # transformers config fields, to train from scratch
    revision: Optional[str] = None  # hub branch, tag or commit
    trust_remote_code: bool = False  # allow a hub model's own Python code
    attn_implementation: Optional[str] = None  # sdpa | eager | flash_attention_2 | flex_attention


@dataclass
class TokenizerConfig:
    name_or_path: Optional[str] = None  # default: the model's own
    train_from_data: bool = False
    vocab_size: int = 8000
    # byte-level bpe trains reproducibly; the tokenizers library's wordpiece and unigram trainers do
    # not (their vocabularies vary between trainings): resume reloads the saved tokenizer, and in a
    # multi-process run rank 0 trains it and sends it to the others
    algorithm: Literal["bpe", "unigram", "wordpiece"] = "bpe"
    lowercase: bool = False


@dataclass
class DataConfig:
    train: Union[str, dict, None] = None  # file, hub dataset, or {source: f, target: f}
    eval: Union[str, dict, None] = None
    eval_fraction: Optional[float] = None  # hold out this share of train when no eval file
    max_train_samples: Optional[int] = None
    max_eval_samples: Optional[int] = None
    format: Optional[str] = None  # sft: text | prompt_completion | messages | sharegpt | alpaca
    # classification
    text_column: str = "text"
    text_pair_column: Optional[str] = None
    label_column: str = "label"
    problem_type: Optional[
        Literal["single_label_classification", "multi_label_classification", "regression"]
    ] = None
    labels: Optional[list] = None  # fixed label order; default: sorted labels seen in train
    max_length: int = 256
    # seq2seq
    source_column: str = "source"
    target_column: str = "target"
    source_lang: Optional[str] = None
    target_lang: Optional[str] = None
    source_prefix: str = ""
    max_source_length: int = 256
    max_target_length: int = 256


@dataclass
class LossConfig:
    class_weights: Union[str, list, None] = None  # "auto" or one weight per class
    label_smoothing: Optional[float] = None  # default: 0.1 for seq2seq from scratch, else 0
    multi_label_threshold: float = 0.5


@dataclass
class PeftConfig:
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: Union[str, list] = "all-linear"
    use_dora: bool = False
    use_rslora: bool = False


@dataclass
class QuantizationConfig:
    bits: Literal[4, 8] = 4
    quant_type: Literal["nf4", "fp4"] = "nf4"
    double_quant: bool = True


@dataclass
class GenerationConfig:
    num_beams: int = 1
    max_new_tokens: int = 128
    length_penalty: float = 1.0
    no_repeat_ngram_size: int = 0
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    batch_size: Optional[int] = None  # default: per_device_eval_batch_size
    forced_bos_token: Optional[str] = None  # seq2seq: first decoder token, e.g. mBART/NLLB target code de_DE


@dataclass
class EarlyStoppingConfig:
    # stops after `patience` evaluations in a row without improvement of train.metric_for_best_model
    # (default loss); the best checkpoint is loaded at the end unless train.load_best_model_at_end: false
    patience: int = 3  # evaluations without improvement of metric_for_best_model before stopping
    threshold: float = 0.0  # an improvement must be larger than this (in the metric's units)


@dataclass
class SFTConfig:
    max_length: int = 1024
    # packed rows give the same loss as unpacked ones, much faster; left unset, packing is off only for
    # remote model code, a leaky model.attn_implementation or context parallelism
    packing: Optional[bool] = None  # padding-free packed rows; default: on where it cannot leak (docs/sft.md)
    # per device, replacing per_device_train_batch_size: with packing one padding-free row of at most
    # this many tokens, else length-bucketed batches of at most this many tokens padding included.
    # Unset: per_device_train_batch_size rows (packed: bins of max_length, so at most batch x max_length)
    batch_tokens: Optional[int] = None  # token budget of a training micro-batch, instead of a batch size
    loss_on: Optional[Literal["all", "completion", "assistant"]] = None  # default by data format
    neftune_alpha: Optional[float] = None
    overlong: Literal["truncate", "drop"] = "truncate"
    eval_generations: int = 0  # held-out eval prompts to generate completions for at each evaluation


@dataclass
class RunConfig:
    task: Literal["classification", "seq2seq", "sft"]  # the task family
    output_dir: str = "runs/default"  # checkpoints, model, results.json, predictions, reports
    seed: int = 42  # seeds model init, data order and dropout
    # "stop" ends the run (exit 4) naming the step, keeping the last good checkpoint; "skip" drops
    # that update and counts it in results.json (nonfinite_steps_skipped)
    nonfinite: Literal["stop", "skip"] = "stop"  # on a NaN/inf loss or gradient: stop | skip the step
    model: ModelConfig = field(default_factory=ModelConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: dict = field(default_factory=dict)  # transformers.TrainingArguments fields
    loss: LossConfig = field(default_factory=LossConfig)
    peft: Optional[PeftConfig] = None  # present = LoRA on
    quantization: Optional[QuantizationConfig] = None  # present = load in 4/8 bit
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    sft: SFTConfig = field(default_factory=SFTConfig)
    # present = stop when train.metric_for_best_model (default: loss) stops improving; the best
    # checkpoint is loaded at the end unless train.load_best_model_at_end is false
    early_stopping: Optional[EarlyStoppingConfig] = None  # {patience: 3, threshold: 0.0}
    source_path: Optional[str] = None  # where the YAML came from (set by load)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# ---------------------------------------------------------------- parsing


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
            from .config_hints import hint_elsewhere

            raise UserError(f"config: unknown key {path!r}"
                            f"{hint_elsewhere(key, where) or did_you_mean(str(key), names)}")
        tp = hints[key]
        sub = _dataclass_of(tp)
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


def _dataclass_of(tp):
    for a in (tp, *typing.get_args(tp)):
        if dataclasses.is_dataclass(a):
            return a
    return None


def parse_override(text: str) -> tuple[list[str], Any]:
    """`a.b.c=value` -> (['a','b','c'], value parsed as YAML)."""
    if "=" not in text:
        raise UserError(f"override {text!r}: expected dotted.key=value")
    key, value = text.split("=", 1)
    if not key or any(not p for p in key.split(".")):
        raise UserError(f"override {text!r}: empty key")
    try:
        parsed = yaml_load(value) if value != "" else ""
    except yaml.YAMLError:
        parsed = value
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
    from suites.train_checks import read_no_as_string, reconcile_top_level

    reconcile_top_level(raw)  # train.seed equal to (or instead of) the top-level seed
    if isinstance(raw.get("train"), dict):
        read_no_as_string(raw["train"])  # `save_strategy: no` is YAML's false
    cfg = _build(RunConfig, raw, "")
    _resolve_paths(cfg, base_dir)
    from .validate import validate

    validate(cfg)
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
