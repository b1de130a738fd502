"""POST /v1/classify for a classification run: the rows `trainsuite predict` writes, for texts sent over HTTP."""

from __future__ import annotations

import json
import os

import torch

from tasks.classification import LABEL_FILE, SINGLE

from ..classification import prediction_rows
from .schemas import ApiError

BATCH = 32  # texts per forward pass


def saved_labels(run_dir: str) -> tuple[str, list] | None:
    """(problem_type, label names in the head's order) from the run's label_map.json, if it has one."""
    path = os.path.join(run_dir, LABEL_FILE)
    if not os.path.isfile(path):
        return None
    with open(path) as fh:
        saved = json.load(fh)
    return saved["problem_type"], saved["labels"]


def labels_of(served) -> tuple[str, list]:
    """The run's label_map.json, else the model config's id2label."""
    saved = saved_labels(served.run_dir)
    if saved is not None:
        return saved
    conf = served.model.config
    id2label = {int(k): v for k, v in (conf.id2label or {}).items()}
    return conf.problem_type or SINGLE, [id2label[i] for i in sorted(id2label)]


@torch.no_grad()
def classify(served, texts: list[str]) -> list[dict]:
    if served.cfg.data.text_pair_column:
        raise ApiError(400, f"{served.name} was trained on text pairs ({served.cfg.data.text_column}, "
                       f"{served.cfg.data.text_pair_column}); /v1/classify takes single texts only")
    problem_type, labels = labels_of(served)
    rows = []
    for start in range(0, len(texts), BATCH):
        enc = served.tokenizer(texts[start:start + BATCH], truncation=True, max_length=served.cfg.data.max_length,
                               padding=True, return_tensors="pt").to(served.device)
        logits = served.model(**enc).logits.float().cpu().numpy()
        rows += prediction_rows(logits, problem_type, labels, served.cfg.loss.multi_label_threshold)
    return rows
