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


GENERATIONS_FILE = "eval_generations.jsonl"  # the latest evaluation's replies (SFT and preference)
GENERATIONS_AT_START_FILE = "eval_generations_start.jsonl"  # those of the evaluation before training

# Why a generated row ended: its end-of-turn / end-of-sequence token, or generation.max_new_tokens.
STOP_EOS, STOP_LENGTH = "eos", "length"

# Without a progress bar (stderr is no terminal: a log file, a job scheduler), a line this often
PROGRESS_LOG_SECONDS = 20.0


class GenerationProgress:
    """Progress over generated rows with generated tokens/s: a tqdm bar on a terminal; otherwise (`quiet`)
    a log line every PROGRESS_LOG_SECONDS and one at the end, from the first process only, so a long
    generation into a log file does not look hung."""

    def __init__(self, total: int, quiet: bool, desc: str = "generating"):
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total, desc=desc, unit="row", disable=quiet, dynamic_ncols=True)
        self.log_lines = quiet and _world()[1] == 0 and total > 0
        self.total, self.done, self.desc = total, 0, desc
        self.start, self.tokens = time.perf_counter(), 0
        self.last_line = self.start

    def rate(self) -> float:
        return self.tokens / max(time.perf_counter() - self.start, 1e-9)

    def update(self, rows: int, generated_tokens: int) -> None:
        self.tokens += generated_tokens
        self.done += rows
        self.bar.set_postfix_str(f"{self.rate():,.0f} tok/s", refresh=False)
        self.bar.update(rows)
        now = time.perf_counter()
        if self.log_lines and now - self.last_line >= PROGRESS_LOG_SECONDS and self.done < self.total:
            self.last_line = now
            log.info("%s: %d/%d rows, %s tokens, %.0f tok/s, %.0f s", self.desc, self.done, self.total,
                     f"{self.tokens:,}", self.rate(), now - self.start)

    def close(self) -> None:
        self.bar.close()
        if self.log_lines and self.done == self.total:
            log.info("%s: %d rows done, %s tokens in %.1f s (%.0f tok/s)", self.desc, self.done,
                     f"{self.tokens:,}", time.perf_counter() - self.start, self.rate())


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


def decode_completion(tokenizer, ids: list[int]) -> str:
    """The generated ids decoded as one sequence. A byte-level model may stop (at a stop token or at
    max_new_tokens) after the first bytes of a character: those bytes decode to U+FFFD, which is no text
    the model wrote, so up to 3 such trailing tokens (a UTF-8 character has at most 4 bytes) are left out."""
    text = tokenizer.decode(ids, skip_special_tokens=True)
    for drop in range(1, min(3, len(ids)) + 1) if text.endswith("\ufffd") else ():
        shorter = tokenizer.decode(ids[:-drop], skip_special_tokens=True)
        if not shorter.endswith("\ufffd"):
            text = shorter
            break
    return text.strip()


# On a CPU large generation batches are slower, not faster (beam 4: 500 sentences in 38 s at batch
# 256, 19 s at batch 32): beams of long and short rows wait on each other and the caches outgrow caches.
CPU_GENERATION_BATCH = 32


def generation_batch_size(g, eval_batch_size: int, device) -> int:
    """generation.batch_size, else per_device_eval_batch_size, at most CPU_GENERATION_BATCH on a CPU."""
    if g is not None and g.batch_size:
        return g.batch_size
    return min(eval_batch_size, CPU_GENERATION_BATCH) if getattr(device, "type", "cpu") == "cpu" else eval_batch_size


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


def stop_token_ids(tokenizer) -> list[int]:
    from tasks.instruction import end_of_turn_ids

    return end_of_turn_ids(tokenizer)  # what `trainsuite inspect` checks is trained at the end of each reply


@torch.no_grad()
def generate(model, tokenizer, prompts: list[str], gen, batch_size: int, synced_gpus: bool = False,
             quiet: bool = True) -> list[tuple[str, int]]:
    """Completions of `prompts` only (left padding, batched longest first, split over the processes by
    suites/generation.py): (text, generated token count, stop reason), in the order of `prompts`, on every
    process. The count leaves out the stop token; the stop reason is STOP_EOS (a stop token: end of turn or
    of sequence) or STOP_LENGTH (generation.max_new_tokens reached)."""
    model_was_training = model.training
    model.eval()
    side, tokenizer.padding_side = tokenizer.padding_side, "left"
    stops = stop_token_ids(tokenizer)
    device = next(model.parameters()).device
    from .sft_speed import use_generation_attention

    restore_attention = use_generation_attention(model)
    settings = generation_settings(gen)

    def run_batch(idx, keep):
        enc = tokenizer([prompts[i] for i in idx], return_tensors="pt", padding=True,
                        add_special_tokens=False).to(device)
        seqs = model.generate(**enc, **settings, eos_token_id=stops, pad_token_id=tokenizer.pad_token_id,
                              synced_gpus=synced_gpus)
        outs = []
        for row in seqs[:, enc["input_ids"].shape[1]:].tolist():
            cut = next((j for j, t in enumerate(row) if t in stops), None)
            stop = STOP_EOS if cut is not None else STOP_LENGTH
            cut = len(row) if cut is None else cut
            outs.append((decode_completion(tokenizer, row[:cut]), cut, stop))
        return outs, ()

    try:
        outs, _ = generate_in_order([len(p) for p in prompts], run_batch,
                                    generation_batch_size(gen, batch_size, device), synced_gpus, quiet)
    finally:
        restore_attention()
        tokenizer.padding_side = side
        model.train(model_was_training)
    return outs


def held_out_generations(trainer, rows: list) -> dict:
    """Greedy (generation: block) replies to held-out eval prompts at an evaluation, written to
    OUTPUT_DIR/eval_generations.jsonl (and, before training, eval_generations_start.jsonl, which the report
    shows beside the latest); returns the generation metrics. `rows`: [(prompt text, reference)]."""
    import os

    from tasks import io
    from tasks.metrics.generation import generation_metrics

    from .distributed import model_is_sharded

    outs = generate(trainer.model, trainer.processing_class, [p for p, _ in rows], trainer.suite_cfg.generation,
                    trainer.args.per_device_eval_batch_size, synced_gpus=model_is_sharded(trainer.args),
                    quiet=trainer.args.disable_tqdm or not trainer.is_world_process_zero())
    preds, refs = [o[0] for o in outs], [r for _, r in rows]
    if trainer.is_world_process_zero():
        written = [{"prompt": prompt, "prediction": pred, "reference": ref, "generated_tokens": n, "stop": stop}
                   for (prompt, ref), (pred, n, stop) in zip(rows, outs)]
        io.write_jsonl(os.path.join(trainer.args.output_dir, GENERATIONS_FILE), written)
        if trainer.state.global_step == 0:  # train.eval_on_start: kept, the report shows replies before and after
            io.write_jsonl(os.path.join(trainer.args.output_dir, GENERATIONS_AT_START_FILE), written)
    return generation_metrics(preds, refs, [o[1] for o in outs])
