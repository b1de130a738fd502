"""Config-time checks of the `sft:` block, light enough to run before anything heavy is imported."""

from __future__ import annotations

from ..errors import UserError
from .distributed import context_parallel_size
from .model_type import model_type

# what the SFT evaluation reports (suites/sft.py); with sft.eval_generations also the generation metrics
EVAL_METRICS = ("loss", "perplexity", "mean_token_accuracy", "num_tokens")

# Implementations whose masks transformers builds from restarting position ids (masking_utils).
# Anything else (a hub kernel, paged attention) gets no mask at all and would attend across documents.
PACKING_SAFE_ATTENTION = ("sdpa", "eager", "flex_attention", "flash_attention_2", "flash_attention_3",
                          "flash_attention_4")


# Model types whose packed documents see each other whatever the attention implementation: their
# attention ignores the position-id restarts (measured with transformers 5.23: a packed document's loss
# differs from its loss alone), or a recurrent state runs on from one document into the next.
LEAKY_MODEL_TYPES = ("biogpt", "bloom", "falcon", "falcon_mamba", "gpt_oss", "mamba", "mamba2", "mpt", "opt",
                     "recurrent_gemma", "rwkv", "xglm")


def default_packing(cfg) -> bool:
    """sft.packing left unset: on (padding-free rows, the fastest way to train, same loss) unless
    something could let packed documents see each other: remote model code (which may not read the
    position-id restarts), an attention implementation outside PACKING_SAFE_ATTENTION, a model type in
    LEAKY_MODEL_TYPES, or context parallelism."""
    attn = cfg.model.attn_implementation or "sdpa"
    return not cfg.model.trust_remote_code and attn in PACKING_SAFE_ATTENTION and \
        context_parallel_size(cfg.train) == 1 and model_type(cfg) not in LEAKY_MODEL_TYPES


def validate_sft(cfg) -> None:
    """Config-time checks of the sft: block (called by validate.py). Resolves an unset
    sft.packing to its default, so that everything after sees true or false."""
    s = cfg.sft
    if s.max_length < 2:
        raise UserError(f"config: sft.max_length must be at least 2, got {s.max_length}")
    if s.packing is None:
        s.packing = default_packing(cfg)
    if s.batch_tokens is not None:
        if s.batch_tokens < s.max_length:
            raise UserError(f"config: sft.batch_tokens ({s.batch_tokens}) must be at least sft.max_length "
                            f"({s.max_length}): the longest document must fit in one batch")
        if "per_device_train_batch_size" in cfg.train:
            raise UserError("config: sft.batch_tokens and train.per_device_train_batch_size exclude each other "
                            "(a token budget replaces the batch size); set one of them")
    attn = cfg.model.attn_implementation or "sdpa"
    if s.packing and model_type(cfg) in LEAKY_MODEL_TYPES:
        raise UserError(f"config: sft.packing with model type {model_type(cfg)} would let packed documents attend to "
                        "each other (its attention does not read the restarts of the position ids); set "
                        "sft.packing=false")
    if s.packing and attn not in PACKING_SAFE_ATTENTION:
        raise UserError(f"config: sft.packing with model.attn_implementation={attn} would let packed documents "
                        f"attend to each other; use one of {', '.join(PACKING_SAFE_ATTENTION)} or sft.packing=false")
    if s.neftune_alpha is not None and s.neftune_alpha < 0:
        raise UserError(f"config: sft.neftune_alpha must be >= 0, got {s.neftune_alpha}")
    if cfg.train.get("neftune_noise_alpha"):
        raise UserError("config: use sft.neftune_alpha, not train.neftune_noise_alpha (which scales the noise by "
                        "the padded length, transformers#34659)")
