"""Config-time checks of the `preference:` block, light enough to run before anything heavy is imported."""

from __future__ import annotations

from ..errors import UserError

# what the preference evaluation reports (suites/preference.py); with eval_generations also the generation metrics
EVAL_METRICS = ("loss", "reward_accuracy", "reward_margin", "rewards_chosen", "rewards_rejected", "logps_chosen",
                "logps_rejected")
LOWER_IS_BETTER = ("loss",)
REFERENCE_FREE = ("orpo", "simpo")  # losses with no reference model


def validate_preference(cfg) -> None:
    p = cfg.preference
    if cfg.task != "preference":
        return
    if p.beta <= 0:
        raise UserError(f"config: preference.beta must be > 0, got {p.beta}")
    if not 0 <= p.label_smoothing < 0.5:
        raise UserError(f"config: preference.label_smoothing must be in [0, 0.5), got {p.label_smoothing}")
    if p.label_smoothing and p.loss != "robust":
        raise UserError(f"config: preference.label_smoothing applies to preference.loss=robust, not {p.loss}")
    if p.max_prompt_length < 1:
        raise UserError(f"config: preference.max_prompt_length must be at least 1, got {p.max_prompt_length}")
    if p.max_length < 2:
        raise UserError(f"config: preference.max_length must be at least 2, got {p.max_length}")
    if p.max_prompt_length >= p.max_length:
        raise UserError(f"config: preference.max_prompt_length ({p.max_prompt_length}) must be below "
                        f"preference.max_length ({p.max_length}): the replies need room")
    if p.precompute_ref and p.loss in REFERENCE_FREE:
        raise UserError(f"config: preference.precompute_ref with preference.loss={p.loss}: that loss uses no "
                        "reference model; remove preference.precompute_ref")
    if p.eval_generations < 0:
        raise UserError(f"config: preference.eval_generations must be >= 0, got {p.eval_generations}")
