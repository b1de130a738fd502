"""Batched generation over many rows, shared by the seq2seq evaluation and SFT generation.

Rows are sorted longest first (a batch holds little padding, and a batch too large for GPU memory
fails at once and is halved), split over the processes (each takes every W-th row of the sorted
order), generated batch by batch, and gathered back in the order of the input rows on every process.

    rows (lengths)      5 2 9 7 3 8         sorted, longest first: 9 8 7 5 3 2
    2 processes         rank 0: 9 7 3       rank 1: 8 5 2
    batches of 2        rank 0: [9 7] [3]   rank 1: [8 5] [2]
    gathered            outputs of rows 0..5 in input order, on both ranks

With a sharded model (ZeRO-3/FSDP, `synced`) every process must join every forward pass, so the
shares are topped up with repeats of one row (their outputs dropped) to the same number of batches.
"""

from __future__ import annotations

import logging
import math
import time

import torch

log = logging.getLogger("trainsuite")


class GenerationProgress:
    """A tqdm bar over generated rows with generated tokens/s; silent when `disable`."""

    def __init__(self, total: int, disable: bool, desc: str = "generating"):
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total, desc=desc, unit="row", disable=disable, dynamic_ncols=True)
        self.start, self.tokens = time.perf_counter(), 0

    def update(self, rows: int, generated_tokens: int) -> None:
        self.tokens += generated_tokens
        rate = self.tokens / max(time.perf_counter() - self.start, 1e-9)
        self.bar.set_postfix_str(f"{rate:,.0f} tok/s", refresh=False)
        self.bar.update(rows)

    def close(self) -> None:
        self.bar.close()


def generation_settings(g) -> dict:
    """`generate` keyword arguments from the generation: block (None: greedy, 128 new tokens), the same
    for every family. forced_bos_token is the seq2seq trainer's (it needs the tokenizer)."""
    if g is None:
        return {"num_beams": 1, "max_new_tokens": 128, "do_sample": False}
    settings = {"num_beams": g.num_beams, "max_new_tokens": g.max_new_tokens,
                "no_repeat_ngram_size": g.no_repeat_ngram_size, "do_sample": g.do_sample}
    if g.num_beams > 1:
        settings.update(length_penalty=g.length_penalty, early_stopping=True)
    if g.do_sample:
        settings.update(temperature=g.temperature, top_p=g.top_p)
    return settings


def _world() -> tuple[int, int]:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank()
    return 1, 0


def _add(a: tuple | None, b: tuple | None) -> tuple | None:
    if a is None or b is None:
        return a if b is None else b
    return tuple(x + y for x, y in zip(a, b))


def generate_in_order(lengths: list[int], run_batch, batch_size: int, synced: bool = False,
                      quiet: bool = True) -> tuple[list, tuple]:
    """Generate for every row, longest first, split over the processes.

    `run_batch(indices, real)` generates for the rows `indices` (the first `real` of them are real
    rows, the rest filler) and returns (outputs, stats): one (text, generated token count) per index,
    and a tuple of numbers that are summed over batches and processes (seq2seq: loss sum and label
    tokens; may be empty). Returns (the outputs in row order, the summed stats), on every process."""
    world, rank = _world()
    n = len(lengths)
    order = sorted(range(n), key=lambda i: -lengths[i])
    mine = order[rank::world]
    real = len(mine)
    if synced and world > 1 and n:
        rounds = math.ceil(math.ceil(n / world) / batch_size)
        mine = mine + [order[0]] * (rounds * batch_size - real)  # filler rows, dropped below
    results, stats, pos, size = {}, None, 0, max(1, batch_size)
    bar = GenerationProgress(real, quiet)
    try:
        while pos < len(mine):
            idx = mine[pos:pos + size]
            keep = max(0, min(len(idx), real - pos))  # filler rows come last
            try:
                outs, batch_stats = run_batch(idx, keep)
            except torch.cuda.OutOfMemoryError:
                if size == 1 or synced:  # sharded: the other ranks' batch counts are fixed already
                    raise
                size = max(1, size // 2)
                torch.cuda.empty_cache()
                log.warning("generation ran out of GPU memory; batch size now %d", size)
                continue
            results.update(zip(idx[:keep], outs[:keep]))
            stats = _add(stats, tuple(batch_stats))
            pos += len(idx)
            bar.update(keep, sum(int(o[1]) for o in outs[:keep]))
    finally:
        bar.close()
    if world > 1:
        import torch.distributed as dist

        gathered = [None] * world
        dist.all_gather_object(gathered, (results, stats))
        results, stats = {}, None
        for r, s in gathered:
            results.update(r)
            stats = _add(stats, s)
    return [results[i] for i in range(n)], stats or ()
