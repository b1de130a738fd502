"""docs/config.md, generated from the config dataclasses so that it cannot drift.

    python -m suites.config.reference > docs/config.md
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import typing

from . import schema as config

SECTIONS = [
    ("top level", config.RunConfig),
    ("model", config.ModelConfig),
    ("tokenizer", config.TokenizerConfig),
    ("data", config.DataConfig),
    ("loss", config.LossConfig),
    ("peft", config.PeftConfig),
    ("quantization", config.QuantizationConfig),
    ("generation", config.GenerationConfig),
    ("sft", config.SFTConfig),
    ("preference", config.PreferenceConfig),
    ("early_stopping", config.EarlyStoppingConfig),
    ("sweep", config.SweepConfig),
]
FIELD_LINE = re.compile(r"^\s+(\w+):\s*(.+?)(?:\s+#\s*(.*))?$")

INTRO = """# Config reference

Generated from `suites/config/schema.py` by `python -m suites.config.reference > docs/config.md`; a test checks
that it is current. Every key can be overridden on the command line as `section.key=value`.

`train:` takes any field of `transformers.TrainingArguments` (see its documentation); unknown fields
are rejected with a suggestion; the few it refuses are listed at the end, with the reason.
`output_dir` and `seed` are top-level keys. Defaults the suite
applies unless you set them: `per_device_train_batch_size: 16`, `per_device_eval_batch_size: 64`,
`num_train_epochs: 3`, `logging_steps: 10`, `save_total_limit: 2`, `eval_strategy: epoch` when there
is eval data, `save_strategy: epoch`, bf16 where the GPU supports it (fp32 otherwise), real-token
counting for tokens/s; each family adds its own (e.g. classification: `learning_rate: 5e-5`,
`warmup_steps: 0.06`, length-grouped batches).

A section marked *optional* is off when absent: writing `peft: {}` turns LoRA on with its defaults.
"""


def _comments(cls) -> dict:
    out = {}
    for line in inspect.getsource(cls).splitlines():
        m = FIELD_LINE.match(line)
        if m and m.group(3):
            out[m.group(1)] = m.group(3).strip()
    return out


def _type_name(tp) -> str:
    text = str(tp).replace("typing.", "")
    text = re.sub(r"<class '(\w+)'>", r"\1", text)
    return text.replace("NoneType", "None").replace("|", "\\|")


def render() -> str:
    parts = [INTRO]
    hints_top = typing.get_type_hints(config.RunConfig)
    for name, cls in SECTIONS:
        optional = name != "top level" and type(None) in typing.get_args(hints_top.get(name, int))
        parts.append(f"\n## `{name}`" + (" (optional)" if optional else "") + "\n")
        parts.append("| key | type | default | meaning |\n| --- | --- | --- | --- |")
        hints, notes = typing.get_type_hints(cls), _comments(cls)
        for f in dataclasses.fields(cls):
            if f.name == "source_path" or dataclasses.is_dataclass(_base(hints[f.name])):
                continue
            if f.default is not dataclasses.MISSING:
                default = repr(f.default)
            elif f.default_factory is not dataclasses.MISSING:
                default = repr(f.default_factory())
            else:
                default = "required"
            parts.append(f"| `{f.name}` | {_type_name(hints[f.name])} | `{default}` | {notes.get(f.name, '').replace('|', chr(92) + '|')} |")
    parts.append(_refused_train_keys())
    return "\n".join(parts) + "\n"


def _refused_train_keys() -> str:
    from .train_values import REFUSED_TRAIN_KEYS

    rows = "\n".join(f"| `{k}` | {why.replace('|', chr(92) + '|')} |" for k, why in REFUSED_TRAIN_KEYS.items())
    return ("\n## `train` keys refused\n\nFields of `transformers.TrainingArguments` that `train:` refuses "
            "(or takes only in one form):\n\n| key | why |\n| --- | --- |\n" + rows)


def _base(tp):
    for a in (tp, *typing.get_args(tp)):
        if dataclasses.is_dataclass(a):
            return a
    return tp


if __name__ == "__main__":
    print(render(), end="")
