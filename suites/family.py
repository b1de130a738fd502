"""A task family's recipe: which task, model, collator and trainer make one run.

The runner (suites/run/runner.py) drives every family the same way; a family names its parts and
overrides only what differs.
"""

from __future__ import annotations

import importlib

from .base import SuiteTrainer


class Family:
    task_cls = None  # tasks.<x>.Task: reads, checks and encodes data; owns metrics
    trainer_cls = SuiteTrainer
    special_tokens = None  # for tokenizer.train_from_data
    defaults: dict = {}  # TrainingArguments defaults for this family
    mode = "train"  # the command: train, eval or predict (set by the runner)

    def __init__(self, cfg):
        self.cfg = cfg

    def build_model(self, tokenizer, task):
        raise NotImplementedError

    def collator(self, tokenizer, task):
        raise NotImplementedError

    def trainer_kwargs(self, tokenizer, task) -> dict:
        """Extra keyword arguments for the trainer (metrics, callbacks...)."""
        return {"compute_metrics": task.compute_metrics}

    def data_counts(self, task) -> dict:
        """What preparing the training data kept, cut or dropped, for results.json (none by default)."""
        return {}

    predict_metrics: dict = {}  # set by predict_rows when the input rows can be scored (test_ prefix)

    def predict_rows(self, trainer, task, dataset, tokenizer) -> list[dict]:
        """One output dict per row of `dataset` (an encoded datasets.Dataset), in order."""
        raise NotImplementedError


def pad_multiple() -> int | None:
    """Pad batch lengths to a multiple of 8 on a GPU (tensor cores); no padding beyond need on CPU."""
    import torch

    return 8 if torch.cuda.is_available() else None


FAMILIES = {
    "classification": "suites.classification:ClassificationFamily",
    "seq2seq": "suites.seq2seq:Seq2SeqFamily",
    "sft": "suites.sft:SFTFamily",
    "preference": "suites.preference:PreferenceFamily",
}


def family_for(cfg) -> Family:
    module, _, name = FAMILIES[cfg.task].partition(":")
    return getattr(importlib.import_module(module), name)(cfg)
