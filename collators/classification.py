"""Classification batches: pad to the longest row of the batch (to a multiple of 8 on GPU)."""

from __future__ import annotations

import torch

from . import round_up


class ClassificationCollator:
    """Dynamic padding; labels stay as given (int ids, float vectors or float targets).

    Rows carry `input_ids` (and `token_type_ids` for text pairs) only: the attention mask of an
    unpadded row is all ones, so it is built here from the lengths, and single-text token types are
    all zeros, so they are built here too when the model takes them. Keeping neither in the dataset
    saves two of three columns in encoding, in the prepared-data cache and in every batch read."""

    def __init__(self, tokenizer, pad_to_multiple_of: int | None = None):
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.side = tokenizer.padding_side
        self.multiple = pad_to_multiple_of
        self.token_types = "token_type_ids" in getattr(tokenizer, "model_input_names", ())

    def __call__(self, rows: list[dict]) -> dict:
        lengths = [len(r["input_ids"]) for r in rows]
        longest = round_up(max(lengths), self.multiple)

        def padded(key, fill):
            out = torch.full((len(rows), longest), fill, dtype=torch.long)
            for i, (r, n) in enumerate(zip(rows, lengths)):
                values = torch.as_tensor(r[key], dtype=torch.long) if key in r else 1
                if self.side == "left":
                    out[i, longest - n:] = values
                else:
                    out[i, :n] = values
            return out

        batch = {"input_ids": padded("input_ids", self.pad_id), "attention_mask": padded("attention_mask", 0)}
        if "token_type_ids" in rows[0] or self.token_types:
            batch["token_type_ids"] = padded("token_type_ids", 0) if "token_type_ids" in rows[0] else \
                torch.zeros_like(batch["input_ids"])
        if "labels" in rows[0]:
            labels = [r["labels"] for r in rows]
            dtype = torch.long if isinstance(labels[0], int) else torch.float
            batch["labels"] = torch.tensor(labels, dtype=dtype)
        return batch
