"""Seq2seq batches: sources padded with the pad id, labels padded with -100 (ignored by the loss).

decoder_input_ids are not built here: the trainer asks the model to shift its labels
(`prepare_decoder_input_ids_from_labels`), so each architecture uses its own start token.
Other keys of a row (the raw texts) are left out of the batch.
"""

from __future__ import annotations

import torch

from . import round_up

IGNORE_INDEX = -100


def _pad(seqs, length: int, fill: int) -> torch.Tensor:
    return torch.tensor([list(s) + [fill] * (length - len(s)) for s in seqs], dtype=torch.long)


class Seq2SeqCollator:
    """Dynamic padding to the longest source / target of the batch (to a multiple of 8 on GPU)."""

    def __init__(self, tokenizer, pad_to_multiple_of: int | None = None, label_pad_id: int = IGNORE_INDEX):
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.multiple = pad_to_multiple_of
        self.label_pad_id = label_pad_id

    def _round(self, n: int) -> int:
        return round_up(n, self.multiple)

    def __call__(self, rows: list[dict]) -> dict:
        longest = self._round(max(len(r["input_ids"]) for r in rows))
        batch = {"input_ids": _pad([r["input_ids"] for r in rows], longest, self.pad_id)}
        if "attention_mask" in rows[0]:
            batch["attention_mask"] = _pad([r["attention_mask"] for r in rows], longest, 0)
        else:  # unpadded rows: ones over each row's length (a pad id inside a source stays attended)
            batch["attention_mask"] = _pad([[1] * len(r["input_ids"]) for r in rows], longest, 0)
        if "labels" in rows[0] and rows[0]["labels"] is not None:
            labels = [r["labels"] for r in rows]
            batch["labels"] = _pad(labels, self._round(max(len(x) for x in labels)), self.label_pad_id)
        return batch
