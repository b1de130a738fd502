"""Config-time checks of the `sft:` block, light enough to run before anything heavy is imported."""

from __future__ import annotations

from .errors import UserError

# Implementations whose masks transformers builds from restarting position ids (masking_utils).
# Anything else (a hub kernel, paged attention) gets no mask at all and would attend across documents.
PACKING_SAFE_ATTENTION = ("sdpa", "eager", "flex_attention", "flash_attention_2", "flash_attention_3",
                          "flash_attention_4")


def validate_sft(cfg) -> None:
    """Config-time checks of the sft: block (called by suites/validate.py)."""
    s = cfg.sft
    if s.max_length < 2:
        raise UserError(f"config: sft.max_length must be at least 2, got {s.max_length}")
    attn = cfg.model.attn_implementation or "sdpa"
    if s.packing and attn not in PACKING_SAFE_ATTENTION:
        raise UserError(f"config: sft.packing with model.attn_implementation={attn} would let packed documents "
                        f"attend to each other; use one of {', '.join(PACKING_SAFE_ATTENTION)} or sft.packing=false")
    if s.neftune_alpha is not None and s.neftune_alpha < 0:
        raise UserError(f"config: sft.neftune_alpha must be >= 0, got {s.neftune_alpha}")
    if cfg.train.get("neftune_noise_alpha"):
        raise UserError("config: use sft.neftune_alpha, not train.neftune_noise_alpha (which scales the noise by "
                        "the padded length, transformers#34659)")
