"""ClassificationTrainer: sequence classification with class weights and label smoothing.

The loss is summed over the batch and divided by the number of labelled examples in the whole
gradient-accumulation window (transformers passes it as `num_items_in_batch`), so that batch 8
and batch 2 x accumulation 4 give the same update.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from collators.classification import ClassificationCollator
from tasks.classification import MULTI, REGRESSION, ClassificationTask, label_value
from tasks.metrics.classification import sigmoid, softmax
from tasks.tokenizer import BERT_LIKE

from .base import SuiteTrainer
from .family import Family, pad_multiple
from .modeling import apply_peft, load_model


# classification heads across architectures: never quantized, always trained
HEAD_MODULES = ("classifier", "score", "pre_classifier", "pooler")


class ClassificationLoss:
    def __init__(self, problem_type: str, class_weights=None, label_smoothing: float = 0.0):
        self.problem_type = problem_type
        self.weights = torch.tensor(class_weights, dtype=torch.float) if class_weights else None
        self.smoothing = label_smoothing

    def __call__(self, outputs, labels, num_items_in_batch=None):
        logits = outputs["logits"] if isinstance(outputs, dict) else outputs[0]
        logits = logits.float()
        if self.problem_type == REGRESSION:
            total = F.mse_loss(logits.view(-1), labels.float().view(-1), reduction="sum")
            count = labels.numel()
        elif self.problem_type == MULTI:
            total = F.binary_cross_entropy_with_logits(logits, labels.float(), reduction="sum")
            count = labels.numel()
        else:
            # Weighted terms are divided by the example count, not the weight sum: that keeps the
            # loss independent of how a window is split into micro-batches.
            w = self.weights.to(logits.device) if self.weights is not None else None
            total = F.cross_entropy(logits, labels, weight=w, label_smoothing=self.smoothing, reduction="sum")
            count = labels.numel()
        denom = num_items_in_batch if num_items_in_batch is not None else count
        return total / denom


class ClassificationTrainer(SuiteTrainer):
    """The loss comes in as `compute_loss_func`; the base keeps eval and predict rows in order."""


class ClassificationFamily(Family):
    task_cls = ClassificationTask
    trainer_cls = ClassificationTrainer
    special_tokens = BERT_LIKE
    defaults = {"learning_rate": 5e-5, "warmup_steps": 0.06, "weight_decay": 0.01,
                "train_sampling_strategy": "group_by_length"}

    def build_model(self, tokenizer, task):
        from transformers import AutoModelForSequenceClassification

        updates = {"problem_type": task.problem_type,
                   "num_labels": 1 if task.problem_type == REGRESSION else len(task.labels)}
        if task.problem_type != REGRESSION:
            updates["id2label"] = dict(enumerate(task.labels))
            updates["label2id"] = dict(task.label2id)
        kwargs = {} if self.cfg.model.from_config else {"ignore_mismatched_sizes": True}
        model = load_model(self.cfg, AutoModelForSequenceClassification, tokenizer, updates,
                           keep_full_precision=HEAD_MODULES, **kwargs)
        return apply_peft(self.cfg, model, "SEQ_CLS")

    def collator(self, tokenizer, task):
        return ClassificationCollator(tokenizer, pad_to_multiple_of=pad_multiple())

    def trainer_kwargs(self, tokenizer, task) -> dict:
        loss = ClassificationLoss(task.problem_type, task.class_weights, self.cfg.loss.label_smoothing or 0.0)
        return {"compute_metrics": task.compute_metrics, "compute_loss_func": loss}

    def predict_rows(self, trainer, task, dataset, tokenizer) -> list[dict]:
        out = trainer.predict(dataset.remove_columns([c for c in ("labels",) if c in dataset.column_names]))
        logits = out.predictions[0] if isinstance(out.predictions, tuple) else out.predictions
        if task.problem_type == REGRESSION:
            return [{"prediction": float(v)} for v in np.asarray(logits).reshape(-1)]
        rows = []
        if task.problem_type == MULTI:
            probs = sigmoid(logits)
            thr = self.cfg.loss.multi_label_threshold
            for p in probs:
                rows.append({"labels": [label_value(task.labels[i]) for i in np.flatnonzero(p >= thr)],
                             "probabilities": {n: round(float(x), 6) for n, x in zip(task.labels, p)}})
            return rows
        probs = softmax(logits)
        for p in probs:
            k = int(p.argmax())
            rows.append({"label": label_value(task.labels[k]), "score": round(float(p[k]), 6),
                         "probabilities": {n: round(float(x), 6) for n, x in zip(task.labels, p)}})
        return rows
