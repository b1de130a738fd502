"""Classification batches: pad to the longest row of the batch (to a multiple of 8 on GPU)."""

from __future__ import annotations

import torch

from . import round_up


class ClassificationCollator:
    """Dynamic padding; labels stay as given (int ids, float vectors or float targets)."""

    def __init__(self, tokenizer, pad_to_multiple_of: int | None = None):
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.side = tokenizer.padding_side
        self.multiple = pad_to_multiple_of

    def __call__(self, rows: list[dict]) -> dict:
        longest = round_up(max(len(r["input_ids"]) for r in rows), self.multiple)
        batch = {}
        for key, fill in (("input_ids", self.pad_id), ("attention_mask", 0), ("token_type_ids", 0)):
            if key not in rows[0]:
                continue
            padded = []
            for r in rows:
                pad = [fill] * (longest - len(r[key]))
                padded.append(pad + list(r[key]) if self.side == "left" else list(r[key]) + pad)
            batch[key] = torch.tensor(padded, dtype=torch.long)
        if "labels" in rows[0]:
            labels = [r["labels"] for r in rows]
            dtype = torch.long if isinstance(labels[0], int) else torch.float
            batch["labels"] = torch.tensor(labels, dtype=dtype)
        return batch
