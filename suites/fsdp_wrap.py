"""Which layers FSDP2 shards as units, for models whose `_no_split_modules` name their embeddings.

accelerate wraps every module whose class is in the model's `_no_split_modules` bottom-up, then shards
the input embedding on its own. BERT and about 40 other model types list their embeddings block there
("BertEmbeddings"), so the word embedding is already sharded when accelerate shards it again, and
`prepare` fails ("Invariant encountered: value was None", from torch's tensor-parallel path). Leaving
the classes that hold the input embedding out of the wrapped layers keeps accelerate's own plan: each
layer a unit, the embedding a unit, the rest with the root.
"""

from __future__ import annotations


def layer_classes_to_wrap(model) -> list[str] | None:
    """The model's `_no_split_modules` without the classes that contain its input embedding; None when
    nothing needs leaving out (accelerate's default is then right)."""
    names = list(getattr(model, "_no_split_modules", None) or [])
    get = getattr(model, "get_input_embeddings", None)
    embedding = get() if callable(get) else None
    if not names or embedding is None:
        return None
    path = next((n for n, m in model.named_modules() if m is embedding), None)
    if path is None:
        return None
    holders = {type(m).__name__ for n, m in model.named_modules() if n and (path == n or path.startswith(n + "."))}
    kept = [n for n in names if n not in holders]
    return kept if kept and len(kept) < len(names) else None


def fix_fsdp_wrapping(args, model) -> None:
    plugin = getattr(args, "fsdp_plugin_args", None)
    if not plugin or plugin.get("transformer_cls_names_to_wrap") or str(plugin.get("auto_wrap_policy", "")).upper() != "TRANSFORMER_BASED_WRAP":
        return  # the user named the layers, or wraps by size
    kept = layer_classes_to_wrap(model)
    if kept:
        plugin["transformer_cls_names_to_wrap"] = ",".join(kept)
