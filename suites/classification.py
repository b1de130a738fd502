"""ClassificationTrainer: sequence classification (single-label, multi-label, regression) with class
weights and label smoothing; the loss is suites/losses.py's ClassificationLoss."""

from __future__ import annotations

import numpy as np

from collators.classification import ClassificationCollator
from tasks.classification import MULTI, REGRESSION, ClassificationTask, label_value, length_order
from tasks.metrics.classification import sigmoid, softmax
from tasks.tokenizer import BERT_LIKE

from .base import SuiteTrainer
from .family import Family, pad_multiple
from .losses import ClassificationLoss
from .modeling import apply_peft, load_model


# classification heads across architectures: never quantized, always trained
HEAD_MODULES = ("classifier", "score", "pre_classifier", "pooler")


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
        order = length_order(dataset["input_ids"])  # longest first: little padding; rows put back below
        dataset = dataset.select(order).remove_columns([c for c in ("labels",) if c in dataset.column_names])
        out = trainer.predict(dataset)
        logits = out.predictions[0] if isinstance(out.predictions, tuple) else out.predictions
        logits = np.asarray(logits)[np.argsort(np.asarray(order), kind="stable")]
        return prediction_rows(logits, task.problem_type, task.labels, self.cfg.loss.multi_label_threshold)


def prediction_rows(logits, problem_type: str, labels, threshold: float) -> list[dict]:
    """One prediction row per row of logits, as `trainsuite predict` writes them (and `serve` answers):
    {prediction} for regression; {labels, probabilities} for multi-label; else {label, score, probabilities}."""
    logits = np.asarray(logits)
    if problem_type == REGRESSION:
        return [{"prediction": float(v)} for v in logits.reshape(-1)]
    rows = []
    if problem_type == MULTI:
        for p in sigmoid(logits):
            rows.append({"labels": [label_value(labels[i]) for i in np.flatnonzero(p >= threshold)],
                         "probabilities": {n: round(float(x), 6) for n, x in zip(labels, p)}})
        return rows
    for p in softmax(logits):
        k = int(p.argmax())
        rows.append({"label": label_value(labels[k]), "score": round(float(p[k]), 6),
                     "probabilities": {n: round(float(x), 6) for n, x in zip(labels, p)}})
    return rows
