"""Sequence log-probabilities of a pair batch (collators/preference.py: chosen rows, then rejected rows).

The per-token log-probs come from the same head as the SFT family's: suites/lm_head.py's chunked head on
a CPU (trl's fused head without Triton takes GiBs and is several times slower there), trl's fused head
(`fused_lm_head=True`, which trl's trainers add to the model) elsewhere.
"""

from __future__ import annotations

import torch

from ..lm_head import plain_head, token_outputs
from .losses import PairLogps

MODEL_KEYS = ("input_ids", "attention_mask", "labels")
REFERENCE_ADAPTER = "ref"  # trl's name for the frozen copy of an adapter that training continues


def use_chunked_head(model, device) -> bool:
    return device.type == "cpu" and plain_head(model)


def pair_logps(model, batch: dict, chunked: bool) -> tuple[PairLogps, object]:
    """(summed reply log-probs of each side, the per-token outputs: log_probs, label_mask, is_top1, entropy)."""
    inputs = {k: batch[k] for k in MODEL_KEYS}
    if chunked:
        out = token_outputs(model, inputs)
    else:
        out = model(**inputs, fused_lm_head=True, use_cache=False)
        out.label_mask = inputs["labels"][:, 1:] != -100
    seq = out.log_probs[:, -out.label_mask.size(1):].sum(-1)
    tokens = out.label_mask.sum(-1)
    chosen, rejected = seq.chunk(2)
    n_chosen, n_rejected = tokens.chunk(2)
    return PairLogps(chosen, rejected, n_chosen, n_rejected), out


@torch.no_grad()
def reference_logps(trainer, batch: dict, before_training: bool = False, model=None) -> tuple[torch.Tensor, torch.Tensor]:
    """The reference model's summed reply log-probs: a separate reference model (full fine-tuning), or the
    trained model with its adapter disabled (LoRA: the base, no second copy in memory), or, before training
    (`before_training`: preference.precompute_ref of a full fine-tune), the model itself. `model`: what runs
    the trained model's forwards, when not trainer.model (the precompute's DeepSpeed inference engine)."""
    from peft import PeftModel

    chunked = trainer.chunked_head
    if trainer.ref_model is not None:
        logps, _ = pair_logps(trainer.ref_model, batch, chunked)
        return logps.chosen, logps.rejected
    forward = model if model is not None else trainer.model
    inner = trainer.accelerator.unwrap_model(forward)
    if not isinstance(inner, PeftModel):
        if not before_training:
            raise RuntimeError("no reference: neither a reference model nor a LoRA adapter to disable")
        logps, _ = pair_logps(forward, batch, chunked)
        return logps.chosen, logps.rejected
    if REFERENCE_ADAPTER in inner.peft_config:  # a continued SFT adapter: its frozen starting copy
        from trl.trainer.utils import use_adapter

        with use_adapter(inner, REFERENCE_ADAPTER):
            logps, _ = pair_logps(forward, batch, chunked)
        return logps.chosen, logps.rejected
    with inner.disable_adapter():
        logps, _ = pair_logps(forward, batch, chunked)
    return logps.chosen, logps.rejected
