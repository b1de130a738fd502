"""SFT speed defaults, chosen from what is installed and where the run happens (docs/sft.md).

Each choice is a small function of the config and of the machine, so that it can be tested on CPU
with the machine mocked:
- attention: flash-attention (varlen, from the position ids of packed rows) when installed on a GPU
  that runs it, else flex attention (block masks) on CUDA, else PyTorch SDPA. All three read the
  restarts of position_ids, so packed documents never see each other (suites/config/sft.py);
  an explicit model.attn_implementation always wins.
- Liger kernels (RMSNorm, SwiGLU, RoPE) on CUDA when liger-kernel is installed; trl keeps its own
  chunked LM-head loss, so Liger's fused linear cross-entropy stays off.
- generation switches flex attention to SDPA for its duration (flex would recompile for every
  new cache length) and back.
"""

from __future__ import annotations

import importlib.util

import torch


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _cuda() -> bool:
    return torch.cuda.is_available()


def _capability() -> tuple[int, int]:
    return torch.cuda.get_device_capability() if _cuda() else (0, 0)


def _has_flex() -> bool:
    return _installed("torch.nn.attention.flex_attention")


def machine_attention() -> list[str]:
    """The attention implementations safe with packed rows that this machine runs, fastest first."""
    if not _cuda():
        return ["sdpa"]
    major, _ = _capability()
    found = []
    if major == 9 and _installed("flash_attn_interface"):  # FlashAttention-3, Hopper
        found.append("flash_attention_3")
    if major >= 8 and _installed("flash_attn"):
        found.append("flash_attention_2")
    if _has_flex():
        found.append("flex_attention")
    return found + ["sdpa"]


def default_attention() -> str:
    """The fastest attention implementation that is safe with packed rows, on this machine."""
    return machine_attention()[0]


SUPPORT_FLAG = {"flash_attention_3": "_supports_flash_attn", "flash_attention_2": "_supports_flash_attn",
                "flex_attention": "_supports_flex_attn", "sdpa": "_supports_sdpa"}


def model_class(model_type: str | None):
    """The causal-LM class of a model type, or None when it is not known to transformers."""
    if not model_type:
        return None
    import transformers
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    name = MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.get(model_type)
    try:
        return getattr(transformers, name) if name else None
    except Exception:  # noqa: BLE001 - a class that fails to import: unknown
        return None


def attention_kwargs(cfg) -> dict:
    """from_pretrained/from_config keyword arguments: the fastest attention that this machine runs AND
    the model class implements, unless the user chose one. A class with none of them (Bloom, MPT, GPT-J:
    eager only) gets no argument, so transformers takes its eager attention instead of refusing sdpa."""
    if cfg.model.attn_implementation:
        return {}
    from .config.model_type import model_type

    cls = model_class(model_type(cfg))
    for impl in machine_attention():
        if cls is None or getattr(cls, SUPPORT_FLAG[impl], False):
            return {"attn_implementation": impl}
    return {}


def use_liger(cfg) -> bool:
    """Liger's layer kernels: on CUDA, when installed, unless train.use_liger_kernel says otherwise."""
    if "use_liger_kernel" in cfg.train:
        return bool(cfg.train["use_liger_kernel"])
    return _cuda() and _installed("liger_kernel")


def speed_defaults(cfg) -> dict:
    """TrainingArguments defaults of the SFT family that depend on the machine."""
    return {"use_liger_kernel": True} if use_liger(cfg) and "use_liger_kernel" not in cfg.train else {}


def use_generation_attention(model):
    """Switch a flex-attention model to SDPA for generation; returns the function that switches back."""
    config = getattr(model, "config", None)
    current = getattr(config, "_attn_implementation", None)
    if current != "flex_attention" or not hasattr(model, "set_attn_implementation"):
        return lambda: None
    model.set_attn_implementation("sdpa")
    return lambda: model.set_attn_implementation(current)
