"""The model_type of the configured model, read without loading it: the config checks (T5 fp16,
packing defaults, attention choice) need it before anything heavy is imported."""

from __future__ import annotations

import json
import os

T5_FAMILY = ("t5", "mt5", "umt5", "longt5", "byt5", "switch_transformers")
# Architectures whose decoder starts from the pad token; the others (BART-like) start from </s>.
PAD_STARTS = (*T5_FAMILY, "marian", "pegasus", "pegasus_x")


def _json_field(path: str, key: str):
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh).get(key)
    except (OSError, ValueError, AttributeError):
        return None


def _cached_config(repo: str) -> str | None:
    """A hub model's config.json when it is already in the local cache (nothing is downloaded)."""
    try:
        from huggingface_hub import try_to_load_from_cache

        path = try_to_load_from_cache(repo, "config.json")
    except Exception:  # noqa: BLE001 - not a repo id, no hub library: unknown
        return None
    return path if isinstance(path, str) else None


def model_type(cfg) -> str | None:
    """The `model_type` of the configured model, read without loading it (from_config, a local
    directory, a saved adapter's base, or the hub cache); None when it cannot be known up front."""
    if cfg.model.from_config:
        return cfg.model.from_config.get("model_type")
    if cfg.model.gguf_file and cfg.model.name_or_path:
        from tasks import gguf_model
        from tasks.io import resolve_model

        folder = resolve_model(cfg.model.name_or_path)
        return gguf_model.model_type(folder, cfg.model.gguf_file) if os.path.isdir(folder) else None
    path = cfg.model.name_or_path and os.path.expanduser(cfg.model.name_or_path)
    for _ in range(2):  # an adapter directory names its base model
        if not path or path.startswith("package:"):
            return None
        if os.path.isdir(path):
            found = _json_field(os.path.join(path, "config.json"), "model_type")
            if found:
                return found
            path = _json_field(os.path.join(path, "adapter_config.json"), "base_model_name_or_path")
            continue
        cached = _cached_config(path)
        return _json_field(cached, "model_type") if cached else None
    return None


def model_type_or_guess(cfg) -> str | None:
    """model_type(), else a T5-family name guessed from the hub name (for the fp16 check)."""
    found = model_type(cfg)
    lowered = (cfg.model.name_or_path or "").lower().replace("-", "")
    return found or next((t for t in T5_FAMILY if t in lowered), None)
