"""The SFT family's LM head on a CPU: per-token log-probabilities in token chunks.

trl 1.16 scores tokens through a fused LM head (trl/kernels/chunked_logprob.py) that never builds the
whole logits. Without Triton (a CPU) it runs torch ops on tiles of up to 4,096 tokens x 32,768 vocabulary
entries with several full-tile temporaries. Measured for the head of SmolLM2-135M (hidden 576, vocabulary
49,152), forward and backward, on a 2-core AMD EPYC: 640 tokens (a batch of 8 short chats) took 0.93 GiB
above its inputs and ~12 s of CPU, 4,096 tokens 4.4 GiB; plain full logits took 0.37 GiB and ~1 s at 640.
Here the head runs over chunks of at most CHUNK_LOGITS logits, each recomputed in backward (activation
checkpointing), so one chunk's logits live at a time, and the matmuls stay torch's (oneDNN).

`token_outputs` returns what trl's `model(**inputs, fused_lm_head=True)` returns and our trainer reads:
log_probs (zero where not trained), label_mask, is_top1, entropy.
"""

from __future__ import annotations

from types import SimpleNamespace

import torch
from torch.utils.checkpoint import checkpoint

CHUNK_LOGITS = 2 ** 22  # logits per chunk (tokens x vocabulary): 16 MiB in fp32
# config fields that change the logits beyond `hidden @ weight.T + bias`; trl's head handles them
SCALED_LOGITS = ("final_logit_softcapping", "logit_scale", "output_multiplier", "lm_head_multiplier", "logits_scaling")


def plain_head(model) -> bool:
    """The causal LM's logits are `hidden @ weight.T (+ bias)`, with no router loss, and its forward can
    skip them (`logits_to_keep`): chunked here."""
    import inspect

    causal = model.get_base_model() if hasattr(model, "get_base_model") else model
    config = causal.config.get_text_config()
    return not any(getattr(config, key, None) is not None for key in SCALED_LOGITS) and \
        not getattr(config, "output_router_logits", False) and causal.get_output_embeddings() is not None and \
        "logits_to_keep" in inspect.signature(type(causal).forward).parameters


def _chunk(hidden, weight, bias, targets):
    logits = hidden @ weight.T
    if bias is not None:
        logits = logits + bias.to(logits.dtype)
    logits = logits.float()
    log_z = logits.logsumexp(-1)
    log_probs = logits.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1) - log_z
    with torch.no_grad():  # for the logs only
        is_top1 = logits.argmax(-1) == targets
        entropy = log_z - (logits.softmax(-1) * logits).sum(-1)
    return log_probs, is_top1, entropy


def token_log_probs(hidden: torch.Tensor, weight: torch.Tensor, bias, targets: torch.Tensor):
    """(log p(target), target is the argmax, entropy) of each row of `hidden` [N, H] (targets [N]),
    CHUNK_LOGITS logits at a time."""
    rows = max(1, CHUNK_LOGITS // weight.size(0))
    parts = []
    for start in range(0, hidden.size(0), rows):
        args = (hidden[start:start + rows], weight, bias, targets[start:start + rows])
        parts.append(checkpoint(_chunk, *args, use_reentrant=False) if torch.is_grad_enabled() else _chunk(*args))
    if not parts:
        empty = hidden.new_zeros(0, dtype=torch.float32)
        return empty, empty.bool(), empty
    return tuple(torch.cat(p) for p in zip(*parts))


def token_outputs(model, inputs: dict) -> SimpleNamespace:
    """The final hidden states through the head, scored on the next-token labels. The model's own forward
    runs (its hooks and adapters with it), asked for the logits of the last position only."""
    kwargs = {k: v for k, v in inputs.items() if k not in ("labels", "use_cache")}
    out = model(**kwargs, use_cache=False, output_hidden_states=True, logits_to_keep=1)
    hidden = out.hidden_states[-1][:, :-1]  # after the final norm (transformers ties it to last_hidden_state)
    causal = model.get_base_model() if hasattr(model, "get_base_model") else model
    labels = inputs["labels"][:, 1:].to(hidden.device)
    mask = labels != -100
    head = causal.get_output_embeddings()
    log_probs, is_top1, entropy = token_log_probs(hidden[mask], head.weight, head.bias, labels[mask])

    def spread(x):  # back to [batch, positions], zero where not trained
        return x.new_zeros(mask.shape).masked_scatter(mask, x)

    return SimpleNamespace(log_probs=spread(log_probs), label_mask=mask, is_top1=spread(is_top1),
                           entropy=spread(entropy))
