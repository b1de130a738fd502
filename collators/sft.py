"""SFT batches: padded, or packed without padding.

Packing happens in two steps. `pack_documents` places tokenized documents into bins of at most
`max_length` tokens, best-fit decreasing (longest first, each into the fullest bin it still fits,
so bins come out nearly full and no document is ever split). `PackedCollator` then lays the bins of
a batch end to end in ONE row, with no padding at all, and position ids that restart at 0 for each
document. Three documents A (3 tokens), B (2) and C (4) in a batch look like this:

    input_ids     [a0 a1 a2 b0 b1 c0 c1 c2 c3]
    labels        [-100 a1 a2 -100 b1 -100 c1 c2 c3]   (-100: first token of each document, and
                                                         any token outside the loss mask)
    position_ids  [0  1  2  0  1  0  1  2  3]

and the attention that the model builds from those position ids (no attention_mask is sent) is
block-diagonal causal: each document sees only its own past, exactly as if it were alone.

    a0 | x
    a1 | x x
    a2 | x x x
    b0 |       x
    b1 |       x x
    c0 |           x
    c1 |           x x
    c2 |           x x x
    c3 |           x x x x

transformers reads the restarts of `position_ids` to build that mask (flash-attention varlen, flex
attention, SDPA and eager); an attention implementation that ignores them would leak across
documents and is refused at config time (suites/sft.py). transformers looks for the restarts only
when no KV cache is in use: the model must be called with use_cache=False (trl and our evaluation do). Since every document's first label is
-100, the last token of A is never trained to predict b0: the packed loss equals the unpacked one.
"""

from __future__ import annotations

import bisect

import numpy as np
import torch

from . import round_up

IGNORE = -100


def best_fit_decreasing(lengths: list[int], capacity: int) -> list[list[int]]:
    """Indices of `lengths` grouped into bins of total <= capacity (every length <= capacity)."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    bins: list[list[int]] = []
    free: list[tuple[int, int]] = []  # (space left, bin index), sorted
    for i in order:
        n = lengths[i]
        k = bisect.bisect_left(free, (n, -1))  # the tightest bin that still fits
        if k < len(free):
            space, b = free.pop(k)
            bins[b].append(i)
            bisect.insort(free, (space - n, b))
        else:
            bins.append([i])
            bisect.insort(free, (capacity - n, len(bins) - 1))
    return bins


def pack_documents(dataset, max_length: int):
    """A datasets.Dataset of bins: concatenated `input_ids`/`labels` and the `seq_lengths` inside."""
    table, lengths = _arrow(dataset)
    return _laid_end_to_end(table, lengths, best_fit_decreasing(lengths.tolist(), max_length))


def _arrow(dataset):
    """The dataset's rows as one Arrow table (any select/shuffle applied) and its tokens per row."""
    import pyarrow.compute as pc

    table = dataset.with_format("arrow")[:]
    return table, pc.list_value_length(table.column("input_ids")).to_numpy().astype(np.int64)


def _laid_end_to_end(table, lengths: np.ndarray, groups: list[list[int]]):
    """The documents of each group laid end to end, in the schema of `pack_documents`: Arrow takes
    the documents in group order (one copy of the tokens, in C++), then each group is one list over
    that run of tokens. No Python int per token (a Python list costs ~36 bytes a token)."""
    import datasets
    import pyarrow as pa

    sizes = np.fromiter((len(g) for g in groups), dtype=np.int64, count=len(groups))
    order = pa.array(np.fromiter((i for g in groups for i in g), dtype=np.int64, count=int(sizes.sum())))
    lens = lengths[order.to_numpy()]
    starts = np.zeros(len(groups) + 1, dtype=np.int64)
    np.cumsum(sizes, out=starts[1:])
    tokens = np.concatenate([[0], np.cumsum(lens)])[starts]  # where each group's tokens begin
    columns = {}
    for name in ("input_ids", "labels"):
        docs = table.column(name).take(order)  # documents in group order
        docs = docs.chunk(0) if docs.num_chunks == 1 else docs.combine_chunks()
        columns[name] = _lists(tokens, docs.flatten())
    columns["seq_lengths"] = _lists(starts, pa.array(lens))
    return datasets.Dataset(pa.table(columns))


def _lists(offsets: np.ndarray, values):
    """Arrow list column of `values` cut at `offsets` (64-bit offsets past 2**31 values)."""
    import pyarrow as pa

    if offsets[-1] > np.iinfo(np.int32).max:
        return pa.LargeListArray.from_arrays(pa.array(offsets), values)
    return pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), values)


def budget_groups(lengths: list[int], budget: int, multiple: int | None = None, seed: int = 0) -> list[list[int]]:
    """Indices of `lengths` in length-bucketed groups whose PADDED size (rows x longest, the longest
    rounded up to `multiple`) stays within `budget` tokens; a document longer than the budget goes
    alone. Equal lengths are mixed by `seed`, so groups are not in file order."""
    import random

    rng = random.Random(seed)
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], rng.random()))  # ascending
    groups: list[list[int]] = []
    for i in order:  # ascending: the newest document is the longest of its group
        if groups and (len(groups[-1]) + 1) * round_up(lengths[i], multiple) <= budget:
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups


def group_documents(dataset, budget: int, packing: bool, multiple: int | None = None, seed: int = 0):
    """Micro-batches by token budget, one dataset row each (batch size 1), in the schema of
    `pack_documents`: with `packing`, bins of at most `budget` real tokens (one padding-free row);
    without, length-bucketed groups of documents that pad to at most `budget` tokens."""
    if packing:
        return pack_documents(dataset, budget)
    table, lengths = _arrow(dataset)
    return _laid_end_to_end(table, lengths, budget_groups(lengths.tolist(), budget, multiple, seed))


def split_documents(rows: list[dict]) -> list[dict]:
    """Rows that hold several documents (`seq_lengths`) -> one row per document."""
    docs = []
    for r in rows:
        start = 0
        for n in r.get("seq_lengths") or [len(r["input_ids"])]:
            docs.append({"input_ids": r["input_ids"][start:start + n], "labels": r["labels"][start:start + n]})
            start += n
    return docs


class PackedCollator:
    """Bins (or single documents) -> one padding-free row with restarting position ids."""

    def __call__(self, rows: list[dict]) -> dict:
        ids, labels, pos = [], [], []
        for r in rows:
            lengths = r.get("seq_lengths") or [len(r["input_ids"])]
            ids.extend(r["input_ids"])
            labels.extend(r["labels"])
            start = 0
            for n in lengths:
                pos.extend(range(n))
                labels[len(labels) - len(r["labels"]) + start] = IGNORE  # first token of each document
                start += n
        as_row = lambda x: torch.tensor([x], dtype=torch.long)  # noqa: E731
        return {"input_ids": as_row(ids), "labels": as_row(labels), "position_ids": as_row(pos)}


class PaddingCollator:
    """Pad to the longest row (to a multiple of 8 on GPU); pads are masked and carry label -100.
    A row holding several documents (a token-budget group) is split into one row per document."""

    def __init__(self, pad_id: int, pad_to_multiple_of: int | None = None, side: str = "right"):
        self.pad_id, self.multiple, self.side = pad_id, pad_to_multiple_of, side

    def __call__(self, rows: list[dict]) -> dict:
        if any(r.get("seq_lengths") for r in rows):  # token-budget groups (group_documents)
            rows = split_documents(rows)
        longest = round_up(max(len(r["input_ids"]) for r in rows), self.multiple)
        batch = {"input_ids": [], "attention_mask": [], "labels": []}
        for r in rows:
            n, pad = len(r["input_ids"]), longest - len(r["input_ids"])
            for key, values, fill in (("input_ids", r["input_ids"], self.pad_id), ("attention_mask", [1] * n, 0),
                                      ("labels", r["labels"], IGNORE)):
                batch[key].append([fill] * pad + list(values) if self.side == "left" else list(values) + [fill] * pad)
        return {k: torch.tensor(v, dtype=torch.long) for k, v in batch.items()}


def document_lengths(batch: dict) -> torch.Tensor:
    """Per token: the length of the document it belongs to (0 on padding). For NEFTune."""
    if "position_ids" in batch and "attention_mask" not in batch:
        pos = batch["position_ids"]
        doc = (pos == 0).long().cumsum(-1)  # document index of each token
        counts = torch.zeros(pos.shape[0], int(doc.max()) + 1, dtype=torch.long, device=pos.device)
        counts.scatter_add_(1, doc, torch.ones_like(doc))
        return counts.gather(1, doc)
    mask = batch["attention_mask"]
    return mask * mask.sum(-1, keepdim=True)
