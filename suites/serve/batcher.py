"""One worker thread owns the model and generates for queued requests, several at once.

    requests  --queue-->  worker: take the first, wait up to `window` s for more (at most max_batch),
                          keep those with the first one's sampling settings (the rest wait for the next round),
                          left-pad them into one batch, one model.generate call
    each step             RowTracker sees every row's new token: appends it, ends a row at its stop token,
                          stop string or max_tokens, and sends the row's new text to its request at once

Greedy rows come out as they would alone: left padding is masked out and each row's positions start
after its padding, so a row's tokens do not depend on its neighbours (tests/test_serve.py checks it).
The row's text is suites/generation.py's decode_completion of its tokens, the same as `trainsuite predict`.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable

import torch
from transformers import StoppingCriteria, StoppingCriteriaList

from ..generation import STOP_EOS, STOP_LENGTH, decode_completion

log = logging.getLogger("trainsuite")

BEAM_ONLY = ("length_penalty", "early_stopping")  # of generation_settings(): a stream is one sequence, no beams
GATHER_SECONDS = 0.02  # how long the first request of a round waits for others to join its batch


@dataclass
class Job:
    """One completion to generate. `emit` (called on the worker thread) gets ("text", delta) events, then
    ("end", finish_reason, completion_tokens), or ("error", message)."""

    prompt_ids: list[int]
    max_new_tokens: int
    sampling: tuple | None  # (temperature, top_p); None: greedy
    stop: tuple = ()  # stop strings: the text ends before the first one
    emit: Callable = lambda event: None  # noqa: E731
    ids: list = field(default_factory=list)
    sent: str = ""
    finish: str | None = None

    def send_up_to(self, text: str) -> None:
        """Send what `text` adds to what was sent (text only grows: a shorter or diverging text waits)."""
        if text.startswith(self.sent) and len(text) > len(self.sent):
            self.emit(("text", text[len(self.sent):]))
            self.sent = text

    def end(self, reason: str, text: str) -> None:
        self.send_up_to(text)
        self.finish = reason
        self.emit(("end", "stop" if reason == STOP_EOS else reason, len(self.ids)))


def _held_back(text: str, stops: tuple) -> str:
    """`text` less a tail that may be the start of a stop string, or a character still being written."""
    keep = len(text)
    for s in stops:
        for k in range(min(len(s) - 1, len(text)), 0, -1):
            if text.endswith(s[:k]):
                keep = min(keep, len(text) - k)
                break
    return text[:keep].rstrip("\ufffd")


class RowTracker(StoppingCriteria):
    """A stopping criterion per row: generate calls it after every step with the sequences so far, so it is
    the one hook that both sees each row's new token and can end a single row of the batch."""

    def __init__(self, jobs: list[Job], tokenizer, stop_ids):
        self.jobs, self.tokenizer, self.stop_ids = jobs, tokenizer, set(stop_ids)

    def step(self, job: Job, token: int) -> None:
        if token in self.stop_ids:
            job.end(STOP_EOS, decode_completion(self.tokenizer, job.ids))
            return
        job.ids.append(token)
        text = decode_completion(self.tokenizer, job.ids)
        cuts = [text.find(s) for s in job.stop if s in text]
        if cuts:
            job.end(STOP_EOS, text[:min(cuts)])
        elif len(job.ids) >= job.max_new_tokens:
            job.end(STOP_LENGTH, text)
        else:
            job.send_up_to(_held_back(text, job.stop))

    def __call__(self, input_ids, scores, **kwargs):
        for job, token in zip(self.jobs, input_ids[:, -1].tolist()):
            if job.finish is None:
                self.step(job, token)
        return torch.tensor([job.finish is not None for job in self.jobs], device=input_ids.device)


class Batcher:
    def __init__(self, model, tokenizer, stop_ids, settings: dict, max_batch: int = 8,
                 window: float = GATHER_SECONDS):
        self.model, self.tokenizer, self.stop_ids = model, tokenizer, list(stop_ids)
        self.settings = settings  # the run's generate settings (beams off: a stream is one sequence)
        self.max_batch, self.window = max(1, max_batch), window
        self.queue: queue.Queue = queue.Queue()
        self.batch_sizes: Counter = Counter()  # size -> batches generated (GET /stats)
        self.submitted = 0
        self.thread = threading.Thread(target=self._work, name="trainsuite-serve-batcher", daemon=True)

    def start(self) -> "Batcher":
        self.thread.start()
        return self

    def submit(self, job: Job) -> None:
        self.submitted += 1
        self.queue.put(job)

    def close(self) -> None:
        self.queue.put(None)
        self.thread.join()

    # -- the worker thread ---------------------------------------------------
    def _gather(self, pending: list) -> bool:
        """Fill `pending` with queued jobs: block for the first, then wait up to `window` for more.
        False once close() was called."""
        if not pending:
            job = self.queue.get()
            if job is None:
                return False
            pending.append(job)
        deadline = time.monotonic() + self.window
        while len(pending) < self.max_batch:
            try:
                job = self.queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if job is None:
                self.queue.put(None)  # close after this round
                break
            pending.append(job)
        return True

    def _work(self) -> None:
        pending: list[Job] = []
        while self._gather(pending):
            key = pending[0].sampling
            batch = [j for j in pending if j.sampling == key][:self.max_batch]
            pending = [j for j in pending if j not in batch]
            try:
                self.generate(batch)
            except Exception as exc:  # noqa: BLE001 - the requests get the error; the server goes on
                log.exception("serve: generation failed")
                for job in batch:
                    if job.finish is None:
                        job.finish = "error"
                        job.emit(("error", f"generation failed: {exc}"))
        for job in pending:
            job.emit(("error", "the server is shutting down"))

    @torch.no_grad()
    def generate(self, jobs: list[Job]) -> None:
        self.batch_sizes[len(jobs)] += 1
        log.info("serve: generating a batch of %d request(s)", len(jobs))
        enc = self.tokenizer.pad({"input_ids": [j.prompt_ids for j in jobs]}, padding=True, return_tensors="pt")
        device = next(self.model.parameters()).device
        kwargs = {k: v for k, v in self.settings.items() if k not in BEAM_ONLY}
        kwargs.update(num_beams=1, max_new_tokens=max(j.max_new_tokens for j in jobs))
        sampling = jobs[0].sampling
        kwargs.update(do_sample=sampling is not None)
        if sampling is not None:
            kwargs.update(temperature=sampling[0], top_p=sampling[1])
        else:
            kwargs.pop("temperature", None), kwargs.pop("top_p", None)
        self.model.generate(input_ids=enc["input_ids"].to(device), attention_mask=enc["attention_mask"].to(device),
                            eos_token_id=self.stop_ids, pad_token_id=self.tokenizer.pad_token_id,
                            stopping_criteria=StoppingCriteriaList([RowTracker(jobs, self.tokenizer, self.stop_ids)]),
                            **kwargs)
        for job in jobs:  # generate ended every row; this is only a guard against a row left open
            if job.finish is None:
                job.end(STOP_LENGTH, decode_completion(self.tokenizer, job.ids))
