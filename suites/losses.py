"""The families' losses. Each is summed over the batch and divided by the count of the whole
gradient-accumulation window (transformers passes it as `num_items_in_batch`: labelled examples for
classification, label tokens for seq2seq), so that batch 8 and batch 2 x accumulation 4 give the
same update. (SFT uses trl's loss, which does the same over trained tokens.)"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from collators.seq2seq import IGNORE_INDEX
from tasks.classification import MULTI, REGRESSION


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


class Seq2SeqLoss:
    """Token cross-entropy with label smoothing; -100 labels count neither in the sum nor in the
    divisor. Divided by the label tokens of the whole accumulation window (`num_items_in_batch`)."""

    def __init__(self, label_smoothing: float = 0.0):
        self.smoothing = label_smoothing

    def __call__(self, outputs, labels, num_items_in_batch=None):
        logits = outputs["logits"] if isinstance(outputs, dict) else outputs[0]
        labels = labels.to(logits.device)
        total = F.cross_entropy(logits.float().view(-1, logits.size(-1)), labels.view(-1),
                                ignore_index=IGNORE_INDEX, label_smoothing=self.smoothing, reduction="sum")
        count = num_items_in_batch if num_items_in_batch is not None else (labels != IGNORE_INDEX).sum()
        return total / count
