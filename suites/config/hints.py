"""Hints for a config key in the wrong place: another section's key (`train.num_beams` ->
`generation.num_beams`), a TrainingArguments field outside `train:`, or another tool's name for one
of ours (`lr`, `lora_alpha`). Used by loader.py and validate.py."""

from __future__ import annotations

import dataclasses
import typing

from .schema import RESERVED_TRAIN_KEYS, RunConfig, dataclass_of, training_argument_names

# Keys users bring from other tools, and where they go here.
ALIASES = {
    "lr": "train.learning_rate", "epochs": "train.num_train_epochs", "num_epochs": "train.num_train_epochs",
    "batch_size": "train.per_device_train_batch_size", "train_batch_size": "train.per_device_train_batch_size",
    "eval_batch_size": "train.per_device_eval_batch_size", "evaluation_strategy": "train.eval_strategy",
    "early_stopping_patience": "early_stopping.patience", "early_stopping_threshold": "early_stopping.threshold",
    "lora_r": "peft.r", "rank": "peft.r", "lora_alpha": "peft.alpha", "lora_dropout": "peft.dropout",
    "max_seq_length": "sft.max_length or data.max_length", "model_name": "model.name_or_path",
    "model_name_or_path": "model.name_or_path", "validation": "data.eval", "eval_split": "data.eval_fraction",
    "label_smoothing_factor": "loss.label_smoothing", "neftune_noise_alpha": "sft.neftune_alpha",
    "load_in_4bit": "quantization.bits", "load_in_8bit": "quantization.bits",
    "generation.max_length": "generation.max_new_tokens", "generation.beams": "generation.num_beams",
}


def hint_elsewhere(key, where: str) -> str:
    """' (did you mean 'generation.num_beams'?)' for a key that belongs to another section (or is
    another tool's name for one of ours); '' when there is none."""
    key = str(key)
    here = where.split(".")[0] if where else ""
    alias = ALIASES.get(f"{here}.{key}") or ALIASES.get(key)
    if alias:
        return f" (did you mean {' or '.join(repr(a) for a in alias.split(' or '))}?)"
    homes = []
    for f in dataclasses.fields(RunConfig):
        sub = dataclass_of(typing.get_type_hints(RunConfig)[f.name])
        if f.name == key and where and f.name != "source_path":
            homes.append(f"top-level '{key}'")
        elif sub is not None and f.name != here and key in {g.name for g in dataclasses.fields(sub)}:
            homes.append(f"'{f.name}.{key}'")
    if not homes and here != "train":
        if key in training_argument_names() and key not in RESERVED_TRAIN_KEYS:
            homes.append(f"'train.{key}'")
    return f" (did you mean {' or '.join(homes)}?)" if homes else ""
