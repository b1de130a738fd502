"""Checks of a parsed RunConfig that need more than types: combinations, files, columns.

Runs before any model or dataset is loaded, so a typo costs seconds, not a GPU hour. The order is
cheapest first: the config alone and the data files' headers import nothing heavy (a mistake there is
reported in a fraction of a second of CPU, tests/test_cli.py measures it); the few rules that need
transformers or torch (a from_config model type, its position table, flex attention on this machine,
report_to integrations) run last.
"""

from __future__ import annotations

import importlib
import os

from ..errors import UserError, did_you_mean
from .distributed import validate_distributed
from .hints import hint_elsewhere
from .integrations import check_report_to
from .model_type import T5_FAMILY, model_type_or_guess
from .schema import RESERVED_TRAIN_KEYS, training_argument_names
from .preference import EVAL_METRICS as PREFERENCE_METRICS, validate_preference
from .sft import EVAL_METRICS, validate_sft
from .train_values import check_positions, check_values

# train: keys whose value the suite reads in its own way (resume_from_checkpoint: true | PATH)
_UNTYPED_TRAIN_KEYS = {"resume_from_checkpoint"}
# train: values TrainingArguments accepts beyond its annotation. fsdp is annotated `str | None` but
# `fsdp: true` turns FSDP on (its own help; what scripts/launch --fsdp passes) and a list of options
# is the legacy form of the string
_MORE_TRAIN_TYPES = {"fsdp": (bool, list)}


def _train_value_ok(value, tp) -> bool | None:
    """True/False where the TrainingArguments annotation is made of plain types (an enum reads a
    string); None (not checked) for anything else."""
    import enum
    import types
    import typing

    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        answers = [_train_value_ok(value, a) for a in typing.get_args(tp)]
        return True if True in answers else (None if None in answers else False)
    if origin is typing.Literal:
        return value in typing.get_args(tp)
    if tp is type(None):
        return value is None
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is str:
        return isinstance(value, str)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return isinstance(value, (str, tp))
    if origin in (list, dict) or tp in (list, dict):
        return isinstance(value, origin or tp)
    return None


def _describe_train_type(tp) -> str:
    import enum
    import types
    import typing

    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(dict.fromkeys(_describe_train_type(a) for a in typing.get_args(tp)))
    if tp is type(None):
        return "null"
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return "str"
    return getattr(origin or tp, "__name__", str(tp))


def _check_train_types(train: dict) -> None:
    """`train.learning_rate: abc` is refused here, not as a traceback once training starts."""
    from .training_fields import training_fields

    hints = training_fields().types
    for key, value in train.items():
        tp = hints.get(key)
        if tp is None or key in _UNTYPED_TRAIN_KEYS or isinstance(value, _MORE_TRAIN_TYPES.get(key, ())):
            continue
        if _train_value_ok(value, tp) is False:
            if isinstance(value, float) and value.is_integer() and _train_value_ok(int(value), tp):
                train[key] = int(value)  # `max_steps: 1e4` reads as a float; the whole number is meant
                continue
            raise UserError(f"config: 'train.{key}' must be {_describe_train_type(tp)}, got {value!r}")


def validate(cfg) -> None:
    _check_config(cfg)  # the config alone
    check_data(cfg)  # the data files exist and hold the columns the task needs
    _check_against_libraries(cfg)  # what only transformers or torch can tell


def _check_against_libraries(cfg) -> None:
    """The rules that import transformers or torch (seconds of CPU): after every cheap check."""
    m = cfg.model
    if m.from_config is not None:
        _check_model_type(m.from_config["model_type"])
    if m.attn_implementation == "flex_attention":
        _check_flex_device(cfg)
    check_report_to(cfg)  # report_to: tensorboard | mlflow must be installed
    check_positions(cfg)  # lengths against the model's position table


def _check_config(cfg) -> None:
    m = cfg.model
    if m.name_or_path is None and m.from_config is None:
        raise UserError("config: set model.name_or_path (hub name or local dir) or model.from_config")
    if m.name_or_path is not None and m.from_config is not None:
        raise UserError("config: model.name_or_path and model.from_config exclude each other; keep one")
    if m.from_config is not None and "model_type" not in m.from_config:
        raise UserError("config: model.from_config needs 'model_type' (e.g. bert, t5, llama)")
    if m.name_or_path and m.name_or_path.startswith((".", "/", "~")) and not os.path.exists(
            os.path.expanduser(m.name_or_path)):
        raise UserError(f"config: model.name_or_path: directory not found: {m.name_or_path}")
    if m.gguf_file is not None:
        from .gguf import check_gguf

        check_gguf(cfg)

    names = training_argument_names()
    for key in cfg.train:
        if key in RESERVED_TRAIN_KEYS:
            raise UserError(f"config: 'train.{key}' is set at the top level: use {RESERVED_TRAIN_KEYS[key]}")
        if key not in names:
            raise UserError(f"config: unknown key 'train.{key}' (not a TrainingArguments field)"
                            f"{hint_elsewhere(key, 'train') or did_you_mean(key, names)}")
    _check_train_types(cfg.train)
    check_values(cfg)  # ranges: batch sizes, epochs, steps, seed, lengths
    if "label_smoothing_factor" in cfg.train:  # our families compute their own loss
        raise UserError("config: use loss.label_smoothing instead of train.label_smoothing_factor")
    model_type = model_type_or_guess(cfg)
    if cfg.train.get("fp16") and model_type in T5_FAMILY:
        raise UserError(f"config: train.fp16 with a {model_type} model gives NaN losses "
                        "(known T5 overflow); use train.bf16=true on a GPU that supports it, or fp32")
    if cfg.train.get("fp16") and cfg.train.get("bf16"):
        raise UserError("config: train.fp16 and train.bf16 exclude each other")
    if cfg.peft is not None and m.from_config is not None:  # the random base is never saved
        raise UserError("config: peft (LoRA) with model.from_config trains adapters over random weights that are "
                        "not saved, so eval/predict could not load the run; remove the peft: block (train the "
                        "whole model) or start from pretrained weights (model.name_or_path)")
    if cfg.quantization is not None:
        if cfg.peft is None:
            raise UserError("config: quantization (4/8-bit) needs a peft: block; quantized weights "
                            "cannot be trained directly (add e.g. peft: {r: 16})")
        if m.from_config is not None:
            raise UserError("config: quantization needs pretrained weights (model.name_or_path), "
                            "not model.from_config")
    validate_distributed(cfg)  # DeepSpeed / FSDP / context parallelism against PEFT, packing, batch size
    if cfg.sft.packing and cfg.task != "sft":
        raise UserError(f"config: sft.packing applies to task: sft, not task: {cfg.task}")
    if cfg.task == "sft":
        validate_sft(cfg)
    validate_preference(cfg)
    if cfg.tokenizer.train_from_data and cfg.data.train is None:
        raise UserError("config: tokenizer.train_from_data needs data.train")
    if cfg.tokenizer.train_from_data and m.name_or_path is not None:
        raise UserError("config: tokenizer.train_from_data goes with model.from_config "
                        "(a pretrained model keeps its own tokenizer)")
    if cfg.data.eval_fraction is not None and not 0 < cfg.data.eval_fraction < 1:
        raise UserError(f"config: data.eval_fraction must be between 0 and 1, got {cfg.data.eval_fraction}")
    if cfg.data.eval_fraction is not None and cfg.data.eval is not None:
        raise UserError("config: data.eval and data.eval_fraction exclude each other")
    for key in ("max_train_samples", "max_eval_samples"):
        v = getattr(cfg.data, key)
        if v is not None and v <= 0:
            raise UserError(f"config: data.{key} must be positive, got {v}")
    _check_early_stopping(cfg)
    if cfg.task == "seq2seq" and cfg.loss.label_smoothing is None:
        # resolved here, from the config as written: eval/predict later swap model.from_config for
        # the trained dir, and eval_loss must use the smoothing that training used
        cfg.loss.label_smoothing = 0.1 if m.from_config is not None else 0.0
    metric = cfg.train.get("metric_for_best_model")
    if cfg.train.get("load_best_model_at_end") and not metric:
        cfg.train["metric_for_best_model"] = "loss"
    _check_best_metric(cfg)
    _lower_is_better_default(cfg)


def _check_best_metric(cfg) -> None:
    """A metric_for_best_model the evaluation never reports is refused now, before any data or model
    loads, not as transformers' KeyError after the first evaluation. Classification metrics depend on
    the problem type, known once the data is read (tasks/classification.py checks those)."""
    from tasks.metrics.generation import METRIC_NAMES

    metric = cfg.train.get("metric_for_best_model")
    if metric is None or cfg.task == "classification":
        return
    name = str(metric).removeprefix("eval_")
    if cfg.task == "seq2seq":
        known, what, hint = (*METRIC_NAMES, "loss"), "a seq2seq", ""
    elif cfg.task == "preference":
        gen = cfg.preference.eval_generations
        known, what = PREFERENCE_METRICS + (METRIC_NAMES if gen else ()), "a preference"
        hint = "" if gen or name not in METRIC_NAMES else " (generation metrics need preference.eval_generations > 0)"
    else:
        known, what = EVAL_METRICS + (METRIC_NAMES if cfg.sft.eval_generations else ()), "an SFT"
        hint = "" if cfg.sft.eval_generations or name not in METRIC_NAMES else \
            " (generation metrics need sft.eval_generations > 0)"
    if name not in known:
        raise UserError(f"config: train.metric_for_best_model '{metric}' is not {what} metric{hint}"
                        f"{did_you_mean(name, known)}; use one of {', '.join(known)}")


def _lower_is_better_default(cfg) -> None:
    """transformers takes every metric but *loss as higher-is-better when greater_is_better is unset,
    so load_best_model_at_end and early stopping would keep the checkpoint with the largest error."""
    from tasks.metrics.generation import LOWER_IS_BETTER

    lower = {"classification": ("mse", "mae"), "seq2seq": LOWER_IS_BETTER,
             "sft": ("perplexity", *LOWER_IS_BETTER), "preference": LOWER_IS_BETTER}[cfg.task]
    name = str(cfg.train.get("metric_for_best_model") or "").removeprefix("eval_")
    if name in lower and cfg.train.get("greater_is_better") is None:
        cfg.train["greater_is_better"] = False


def _check_flex_device(cfg) -> None:
    """flex_attention is refused off CUDA rather than switched to sdpa: an explicit choice is never
    changed behind the user's back, and the fix is one key. On CPU torch has no backward pass for it,
    and its forward was seen wrong at some sequence lengths (torch 2.13, AMD EPYC)."""
    import torch

    if torch.cuda.is_available() and not cfg.train.get("use_cpu"):
        return
    raise UserError(f"config: model.attn_implementation=flex_attention needs a CUDA GPU (on CPU, torch "
                    f"{torch.__version__.split('+')[0]} has no backward pass for it and its forward is wrong at "
                    "some lengths); use sdpa (packing works the same), or leave it unset for this machine's fastest")


def _check_model_type(model_type) -> None:
    """`from_config: {model_type: bret}` in one short line, not transformers' list of 500 types."""
    from transformers import CONFIG_MAPPING

    if not isinstance(model_type, str) or model_type not in CONFIG_MAPPING:
        raise UserError(f"config: model.from_config.model_type {model_type!r} is not a transformers model "
                        f"type (e.g. bert, t5, llama){did_you_mean(model_type, list(CONFIG_MAPPING.keys()))}")


def _check_early_stopping(cfg) -> None:
    """Early stopping needs evaluations to compare; it keeps the best checkpoint unless told not to."""
    es = cfg.early_stopping
    if es is None:
        return
    if es.patience < 1:
        raise UserError(f"config: early_stopping.patience must be at least 1, got {es.patience}")
    if es.threshold < 0:
        raise UserError(f"config: early_stopping.threshold must be 0 or more, got {es.threshold}")
    if cfg.data.eval is None and cfg.data.eval_fraction is None:
        raise UserError("config: early_stopping needs evaluation data: set data.eval or data.eval_fraction")
    if cfg.train.get("eval_strategy", "epoch") == "no":
        raise UserError("config: early_stopping needs evaluations during training: set train.eval_strategy "
                        "to epoch or steps")
    cfg.train.setdefault("metric_for_best_model", "loss")
    cfg.train.setdefault("load_best_model_at_end", True)


def check_data(cfg, splits=("train", "eval")) -> None:
    """Files exist and hold the columns the task needs."""
    from tasks import io

    task = importlib.import_module(f"tasks.{task_module(cfg.task)}")
    for split in splits:
        spec = getattr(cfg.data, split)
        if spec is None:
            continue
        key = f"data.{split}"
        io.check_exists(spec, key)
        cols = io.peek_columns(spec, key)
        if cols is None:
            continue
        for col in task.required_columns(cfg, cols, split):
            if col not in cols:
                raise UserError(f"{key}: {spec}: no column '{col}' (found: {', '.join(sorted(cols))})"
                                f"{did_you_mean(col, cols)}")


def task_module(task: str) -> str:
    return {"classification": "classification", "seq2seq": "seq2seq", "sft": "instruction",
            "preference": "preference"}[task]
