"""The config of `trainsuite eval` / `predict` when the command line names the model to use.

A run trained from scratch is evaluated with its own training config: `trainsuite eval train.yaml
model.name_or_path=RUN` (or RUN/checkpoint-N). The command line's model.name_or_path then wins over
the file's from-scratch settings (model.from_config, tokenizer.train_from_data), with one log line.
The file is validated first as it was for training, so that the defaults it resolved then (the
from-scratch label smoothing of seq2seq, ...) hold for the evaluation too: the eval of a checkpoint
reproduces the eval_loss that training logged for it.
"""

from __future__ import annotations

from . import loader as config
from .validate import validate

NAME_KEY = "model.name_or_path"
GGUF_KEY = "model.gguf_file"


def _is_name_override(text: str) -> bool:
    return text.split("=", 1)[0].strip() == NAME_KEY


def load(path: str, overrides: list[str]):
    overrides = list(overrides or [])
    named = [o for o in overrides if "=" in o and _is_name_override(o)]
    if not named:
        return config.load(path, overrides)
    if not any(o.split("=", 1)[0].strip() == GGUF_KEY for o in overrides):
        # the trained run (or checkpoint) named on the command line is an ordinary model folder; the
        # config's GGUF file was the base it started from
        overrides.append(f"{GGUF_KEY}=null")
    rest = [o for o in overrides if o not in named]
    raw = config.apply_overrides(config.read_yaml(path), rest)
    model, tok = raw.get("model") or {}, raw.get("tokenizer") or {}
    if not isinstance(model, dict) or not isinstance(tok, dict) or (
            model.get("from_config") is None and not tok.get("train_from_data")):
        return config.load(path, overrides)  # not a from-scratch file: nothing to replace
    cfg = config.load(path, rest)  # as training saw it, its defaults resolved
    name = config.apply_overrides({}, named)["model"]["name_or_path"]
    cfg.model.name_or_path, cfg.model.from_config = name, None
    cfg.tokenizer.train_from_data = False
    validate(cfg)  # now as a pretrained-model config (the directory exists, ...)
    cfg.source_overrides = overrides
    cfg.inference_note = (f"model.name_or_path={name} (command line) replaces the config's from-scratch "
                          "model (model.from_config, tokenizer.train_from_data); its loss settings are kept")
    return cfg
