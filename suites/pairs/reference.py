"""preference.precompute_ref: the reference log-probs of every pair, computed once before training.

They are kept beside the prepared data (tasks/prepared_cache.py's folder, as JSON: nothing is ever
unpickled) under a key made of the encoded pairs and the reference weights, so a second run on the same data and model reads them instead of computing them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os

from collators.preference import REF_COLUMNS

log = logging.getLogger("trainsuite")

VERSION = 1


def _dataset_digest(ds) -> str:
    from tasks.prepared_cache import data_digest

    return data_digest(ds)


def _entry(root: str | None, key: str) -> str | None:
    return os.path.join(root, "reference-logps", f"{key}.json") if root else None


def _read(path: str | None, n: int):
    if not path or not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
        cols = [data[c] for c in REF_COLUMNS]
        if all(isinstance(c, list) and len(c) == n and all(isinstance(v, (int, float)) for v in c) for c in cols):
            return cols
    except (OSError, ValueError, KeyError, TypeError):
        pass
    log.warning("preference.precompute_ref: the cached reference log-probs %s could not be read; computing them "
                "again", path)
    return None


def _write(path: str | None, cols) -> None:
    if not path:
        return
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".tmp", "w", encoding="utf-8") as fh:
        json.dump({"version": VERSION, **dict(zip(REF_COLUMNS, cols))}, fh)
    os.replace(path + ".tmp", path)


def _inference_engine(trainer):
    """Under DeepSpeed the precompute runs before the training engine exists: ZeRO-3's weights are already
    partitioned (a plain forward sees empty tensors) and ZeRO-1/2's are not yet on the device. An inference
    engine (trl's own, kept on the trainer as trl keeps it) gathers and places them; None elsewhere."""
    if trainer.ref_model is not None or not getattr(trainer, "is_deepspeed_enabled", False):
        return None
    if getattr(trainer, "_precompute_engine", None) is None:
        from trl.models import prepare_deepspeed

        trainer._precompute_engine = prepare_deepspeed(trainer.model, trainer.accelerator)
    return trainer._precompute_engine


def _device_of(model, default):
    """Where the model's weights are before the trainer places them (FSDP wraps and moves them later)."""
    param = next(model.parameters(), None)
    return param.device if param is not None else default


def with_reference_logps(trainer, dataset, name: str, batch_size: int, cache_root: str | None):
    """`dataset` with the two reference columns added: from the cache when there, else computed (in order,
    no shuffling) and cached. Rank 0 writes the cache; every process computes what it needs."""
    from .logps import reference_logps

    # trl hashes the reference weights (its hash_module) before any sharding, when told of a precompute
    key = hashlib.sha256(f"{VERSION}:{_dataset_digest(dataset)}:{trainer._precompute_model_hash}".encode()).hexdigest()
    path = _entry(cache_root, key)
    cols = _read(path, len(dataset))
    if cols is not None:
        log.info("preference.precompute_ref: %s reference log-probs read from the cache (%s)", name, path)
    else:
        chosen, rejected = [], []
        engine = _inference_engine(trainer)
        model = trainer.ref_model if trainer.ref_model is not None else (engine or trainer.model)
        device = trainer.args.device if engine is not None else _device_of(model, trainer.args.device)
        was_training = model.training
        model.eval()
        try:
            for start in range(0, len(dataset), batch_size):
                batch = trainer.data_collator([dataset[i] for i in range(start, min(start + batch_size, len(dataset)))])
                batch = {k: v.to(device) for k, v in batch.items()}
                c, r = reference_logps(trainer, batch, before_training=True, model=engine)
                chosen += c.float().cpu().tolist()
                rejected += r.float().cpu().tolist()
        finally:
            model.train(was_training)
        cols = [chosen, rejected]
        if trainer.is_world_process_zero():
            _write(path, cols)
        log.info("preference.precompute_ref: computed the reference log-probs of %d %s pairs", len(dataset), name)
    for col, values in zip(REF_COLUMNS, cols):
        dataset = dataset.add_column(col, values)
    return dataset
