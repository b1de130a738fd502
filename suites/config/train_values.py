"""Checks of `train:` values and of the numeric settings beside them, run by suites/config/validate.py before any
model loads: a value transformers or torch would take and then fail on (a traceback after the model
loaded) or silently misread (`num_train_epochs: 0` saves an untrained model) is refused in one line.

REFUSED_TRAIN_KEYS is the list docs/config.md shows: each TrainingArguments field `train:` refuses, and why.
"""

from __future__ import annotations

import math
import os

from ..errors import UserError

# TrainingArguments fields `train:` refuses (or takes only in one form), with the reason shown to the user
# and in docs/config.md (suites/config/reference.py renders this table).
REFUSED_TRAIN_KEYS = {
    "output_dir": "a top-level key: `output_dir` (`train.output_dir` is taken when it equals it or the "
                  "top level leaves it unset)",
    "seed": "a top-level key: `seed` (`train.seed` is taken when it equals it or the top level leaves it unset)",
    "label_smoothing_factor": "the families compute their own loss: use `loss.label_smoothing`",
    "neftune_noise_alpha": "task `sft`: use `sft.neftune_alpha` (transformers scales the noise by the padded "
                           "length, transformers#34659); 0 or null is taken",
    "label_names": "every family's batches carry their targets as `labels`; only `[labels]` is taken "
                   "(name your data's column with `data.label_column`)",
}

# YAML 1.1 reads `no` (and `off`) as false: for these keys false can only mean "no"
STRATEGY_KEYS = ("eval_strategy", "save_strategy", "logging_strategy")
SEED_RANGE = 2 ** 32  # numpy's seeds: 0 .. 2**32 - 1


def read_no_as_string(train: dict) -> None:
    """`save_strategy: no` reaches us as False; it means the strategy "no"."""
    for key in STRATEGY_KEYS:
        if train.get(key) is False:
            train[key] = "no"


def reconcile_top_level(raw: dict) -> None:
    """`train.seed` / `train.output_dir` (README: `train:` takes TrainingArguments fields) are taken as the
    top-level key when that is unset or holds the same value; a different value is refused."""
    train = raw.get("train")
    if not isinstance(train, dict):
        return
    for key in ("seed", "output_dir"):
        if key not in train:
            continue
        value = train[key]
        if key not in raw:
            raw[key] = train.pop(key)
        elif _same(raw[key], value, key):
            train.pop(key)
        else:
            raise UserError(f"config: train.{key} ({value!r}) contradicts the top-level {key} ({raw[key]!r}); "
                            f"set {key} once, at the top level")


def _same(a, b, key) -> bool:
    if key == "output_dir" and isinstance(a, str) and isinstance(b, str):
        return os.path.normpath(os.path.expanduser(a)) == os.path.normpath(os.path.expanduser(b))
    return type(a) is type(b) and a == b


def _at_least(where: str, value, low, what: str = "") -> None:
    if value is not None and (not math.isfinite(value) or value < low):
        raise UserError(f"config: {where} must be {what or f'at least {low}'}, got {value}")


def check_values(cfg) -> None:
    """Ranges of the top-level seed, `train:` values (types are checked already) and data/sft lengths
    (check_positions compares those with the model's positions)."""
    t = cfg.train
    for where, value in (("seed", cfg.seed), ("train.data_seed", t.get("data_seed"))):
        if value is not None and not 0 <= value < SEED_RANGE:
            raise UserError(f"config: {where} must be between 0 and {SEED_RANGE - 1}, got {value}")
    for key in ("learning_rate", "weight_decay", "warmup_steps", "max_grad_norm"):
        _at_least(f"train.{key}", t.get(key), 0, "0 or more")
    for key in ("per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps",
                "eval_accumulation_steps"):
        _at_least(f"train.{key}", t.get(key), 1)
    for key in ("logging_steps", "save_steps", "eval_steps"):  # a float below 1 is a share of the run
        value = t.get(key)
        if value is not None and not (math.isfinite(value) and value > 0):
            raise UserError(f"config: train.{key} must be above 0, got {value}")
    max_steps = t.get("max_steps", -1)
    if max_steps == 0 or max_steps < -1:
        raise UserError(f"config: train.max_steps must be positive (or -1: train num_train_epochs), got {max_steps}")
    epochs = t.get("num_train_epochs")
    if epochs is not None and max_steps == -1 and not (math.isfinite(epochs) and epochs > 0):
        raise UserError(f"config: train.num_train_epochs must be above 0 (or set train.max_steps), got {epochs}")
    labels = t.get("label_names")
    if labels is not None and list(labels) != ["labels"]:
        raise UserError(f"config: train.label_names {labels!r} is refused: {REFUSED_TRAIN_KEYS['label_names']}")
    if t.get("push_to_hub"):
        _check_hub_access(t)
    _check_lengths(cfg)


def _check_hub_access(t: dict) -> None:
    """push_to_hub uploads at every save and at the end: without hub access or a token the first upload
    fails with a connection or 401 traceback after training ran."""
    from huggingface_hub import constants, get_token

    if constants.HF_HUB_OFFLINE:
        raise UserError("config: train.push_to_hub needs the hub, but HF_HUB_OFFLINE is set; unset it or "
                        "drop train.push_to_hub")
    if not (t.get("hub_token") or get_token()):
        raise UserError("config: train.push_to_hub needs a hub token: run `hf auth login`, set HF_TOKEN, or "
                        "set train.hub_token")


def _check_lengths(cfg) -> None:
    d = cfg.data
    for key in ("max_length", "max_source_length", "max_target_length"):
        _at_least(f"data.{key}", getattr(d, key), 1)
    for key in ("num_beams", "max_new_tokens", "batch_size"):
        _at_least(f"generation.{key}", getattr(cfg.generation, key), 1)


def check_positions(cfg) -> None:
    """The configured lengths against the model's position table. Called by validate.py after the cheap
    checks: a from_config model's table comes from transformers' config class (an import of seconds)."""
    limit = position_limit(cfg)
    if limit is None:
        return
    keys = {"sft": ("sft.max_length",), "preference": ("preference.max_length",), "classification": ("data.max_length",),
            "seq2seq": ("data.max_source_length", "data.max_target_length")}[cfg.task]
    for key in keys:
        section, name = key.split(".")
        refuse_beyond_positions(key, getattr(getattr(cfg, section), name), limit)


def refuse_beyond_positions(key: str, value: int | None, limit: int) -> None:
    """A configured length past the model's position table indexes past its end (an IndexError in the
    middle of training or generation). Checked here at config time where the table is known, and by
    modeling.check_position_table once a hub model's config is loaded."""
    if value is not None and value > limit:
        raise UserError(f"config: {key} {value} is beyond the model's {limit} positions "
                        f"(max_position_embeddings); use at most {limit}")


POSITION_KEYS = ("max_position_embeddings", "n_positions")


def position_limit(cfg) -> int | None:
    """The model's position table size, read without loading it (from_config with the model type's
    defaults, or a local directory's config.json); None when unknown or when positions are relative (T5)."""
    from .model_type import _json_field

    if cfg.model.from_config:
        from transformers import AutoConfig

        try:
            conf = AutoConfig.for_model(**cfg.model.from_config)
        except Exception:  # noqa: BLE001 - a field the config class refuses: transformers reports it when it builds
            return None
        found = [getattr(conf, k, None) for k in POSITION_KEYS]
    else:
        path = cfg.model.name_or_path and os.path.expanduser(cfg.model.name_or_path)
        if not path or not os.path.isdir(path):
            return None
        found = [_json_field(os.path.join(path, "config.json"), k) for k in POSITION_KEYS]
    found = [v for v in found if isinstance(v, int) and not isinstance(v, bool) and v > 0]
    return found[0] if found else None
