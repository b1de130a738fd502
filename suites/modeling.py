"""Loading tokenizers and models from a run config: hub names, local dirs, packaged models,
from-scratch configs, 4/8-bit quantization and LoRA adapters."""

from __future__ import annotations

import logging
import math
import os

import torch

from tasks.io import model_path, resolve_model as resolve

from . import loading_info
from .errors import MISTAKES, UserError

log = logging.getLogger("trainsuite")


def _hub_error(what: str, name: str, exc: Exception) -> UserError:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return UserError(f"{what} '{name}' could not be loaded: {first}")


def load_tokenizer(cfg, texts=None, special=None, task=None, train_rows=None):
    """The model's own tokenizer, another named one, or one trained on `texts()` (kept in the
    prepared-data cache when `task` and `train_rows` are given: a second run on the same rows reuses it)."""
    tc = cfg.tokenizer
    if tc.train_from_data:
        from tasks.tokenizer import train_tokenizer

        def train():
            log.info("training a %s tokenizer (vocab %d) on the training texts", tc.algorithm, tc.vocab_size)
            return train_tokenizer(texts(), tc.vocab_size, special, tc.algorithm, tc.lowercase)

        if task is not None and train_rows is not None:
            from tasks import prepared_cache

            return _once_for_all_ranks(lambda: prepared_cache.trained_tokenizer(cfg, task, train_rows, special, train))
        return _once_for_all_ranks(train)
    name = resolve(tc.name_or_path) if tc.name_or_path else model_path(cfg.model)
    if name is None:
        raise UserError("config: model.from_config needs a tokenizer: set tokenizer.name_or_path "
                        "or tokenizer.train_from_data: true")
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(name, revision=cfg.model.revision,
                                             trust_remote_code=cfg.model.trust_remote_code)
    except (OSError, ValueError) as exc:
        raise _hub_error("tokenizer", name, exc) from None


def _once_for_all_ranks(make):
    """`make()` on rank 0 only, its result sent to every process. Tokenizer trainers are not
    deterministic (WordPiece and Unigram vocabularies vary between trainings), so ranks that each
    trained their own would number tokens differently, or fail on mismatched embedding sizes."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return make()
    box = [None]
    if dist.get_rank() == 0:
        try:
            box[0] = make()
        except BaseException as exc:  # the other ranks must not wait for a tokenizer forever
            # a UserError travels as it is; anything else (Ctrl-C, an unpicklable error) as a message
            box[0] = exc if isinstance(exc, MISTAKES) else RuntimeError(f"rank 0 failed: {exc!r}")
            dist.broadcast_object_list(box, src=0)
            raise
    dist.broadcast_object_list(box, src=0)
    if isinstance(box[0], BaseException):
        raise box[0]
    return box[0]


def compute_dtype() -> torch.dtype:
    if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def quantization_config(cfg, keep_full_precision=None):
    """`keep_full_precision`: module names left unquantized (a new task head must train)."""
    q = cfg.quantization
    if q is None:
        return None
    from transformers import BitsAndBytesConfig

    skip = list(keep_full_precision) if keep_full_precision else None
    if q.bits == 8:
        return BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=skip)
    extra = {}
    if _shards_weights(cfg):  # ZeRO-3/FSDP shard the 4-bit weights only when stored like the others
        extra["bnb_4bit_quant_storage"] = compute_dtype()
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=q.quant_type,
                              bnb_4bit_use_double_quant=q.double_quant,
                              bnb_4bit_compute_dtype=compute_dtype(), llm_int8_skip_modules=skip, **extra)


def _shards_weights(cfg) -> bool:
    from .config.distributed import fsdp_settings, zero_stage

    return zero_stage(cfg.train) == 3 or fsdp_settings(cfg.train) is not None


def load_model(cfg, auto_cls, tokenizer, config_updates: dict | None = None, keep_full_precision=None,
               **kwargs):
    """A model from `model.from_config` (random init) or `model.name_or_path` (pretrained)."""
    from transformers import AutoConfig

    m = cfg.model
    updates = dict(config_updates or {})
    if m.attn_implementation:
        kwargs["attn_implementation"] = m.attn_implementation
    if m.from_config is not None:
        fields = {k: v for k, v in m.from_config.items() if k != "model_type"}
        fields.setdefault("vocab_size", len(tokenizer))
        for tok_attr in ("pad", "bos", "eos", "decoder_start"):
            tid = getattr(tokenizer, f"{tok_attr}_token_id", None) if tok_attr != "decoder_start" else None
            if tid is not None:
                fields.setdefault(f"{tok_attr}_token_id", tid)
        fields.update(updates)
        try:
            config = AutoConfig.for_model(m.from_config["model_type"], **fields)
        except (ValueError, KeyError) as exc:
            raise UserError(f"config: model.from_config: {str(exc).splitlines()[0]}") from None
        model = auto_cls.from_config(config, **kwargs)
    else:
        name = model_path(m)
        if is_adapter_dir(name):
            return load_adapter_model(cfg, auto_cls, tokenizer, name, updates, keep_full_precision, **kwargs)
        qc = quantization_config(cfg, keep_full_precision)
        if qc is not None:
            kwargs["quantization_config"] = qc
            kwargs.setdefault("dtype", compute_dtype())
        try:
            with loading_info.without_load_report():
                model, info = auto_cls.from_pretrained(name, revision=m.revision, trust_remote_code=m.trust_remote_code,
                                                       output_loading_info=True, **updates, **kwargs)
        except (OSError, ValueError) as exc:
            raise _hub_error("model", name, exc) from None
        loading_info.report(model, m.name_or_path, info)  # a new task head: debug; anything else: a warning
    if getattr(model.config, "pad_token_id", None) is None and tokenizer.pad_token_id is not None:
        model.config.pad_token_id = tokenizer.pad_token_id
    return model


def load_adapter_model(cfg, auto_cls, tokenizer, adapter_dir: str, config_updates: dict | None = None,
                       keep_full_precision=None, **kwargs):
    """A saved LoRA adapter (adapter_config.json) on top of the base model it names, for eval/predict.
    `config_updates` shape the base as in training (e.g. the number of labels of a new head)."""
    import json

    from peft import PeftModel

    with open(os.path.join(adapter_dir, "adapter_config.json")) as fh:
        base = json.load(fh).get("base_model_name_or_path")
    if not base:
        raise UserError(f"model: {adapter_dir}: adapter_config.json names no base model (base_model_name_or_path)")
    qc = quantization_config(cfg, keep_full_precision)
    if qc is not None:
        kwargs.update(quantization_config=qc, dtype=compute_dtype())
    try:
        with loading_info.without_load_report():
            model, info = auto_cls.from_pretrained(resolve(base), revision=cfg.model.revision,
                                                   trust_remote_code=cfg.model.trust_remote_code,
                                                   output_loading_info=True, **(config_updates or {}), **kwargs)
    except (OSError, ValueError) as exc:
        raise _hub_error("base model of the adapter", base, exc) from None
    loading_info.report(model, base, info)  # the adapter brings the task head's weights
    if len(tokenizer) > model.get_input_embeddings().num_embeddings:
        model.resize_token_embeddings(len(tokenizer))
    log.info("loaded adapter %s on base model %s", adapter_dir, base)
    return PeftModel.from_pretrained(model, adapter_dir, is_trainable=False)


def apply_peft(cfg, model, task_type: str):
    """Wrap the model with LoRA when the config has a `peft:` block."""
    if cfg.peft is None:
        return model
    from peft import LoraConfig, PeftModel, get_peft_model, prepare_model_for_kbit_training

    if isinstance(model, PeftModel):
        # eval/predict of a LoRA run dir loads its trained adapter; a second, fresh one under the
        # same name would replace it (and its trained head) with untrained weights
        return model

    p = cfg.peft
    if cfg.quantization is not None:
        t = cfg.train
        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=bool(t.get("gradient_checkpointing") or t.get("activation_checkpointing")),
            gradient_checkpointing_kwargs=t.get("gradient_checkpointing_kwargs") or t.get("activation_checkpointing_kwargs"))
    lora = LoraConfig(r=p.r, lora_alpha=p.alpha, lora_dropout=p.dropout, target_modules=p.target_modules,
                      use_dora=p.use_dora, use_rslora=p.use_rslora, task_type=task_type)
    try:
        model = get_peft_model(model, lora)
    except ValueError as exc:
        raise UserError(f"config: peft: {str(exc).splitlines()[0]}") from None
    return model


def check_position_table(model_config, lengths: dict) -> None:
    """The config-time length check (config/train_values.py) for a model whose position table is known
    only once loaded (a hub name). `lengths`: config key -> the length it sets (None: unset)."""
    from .config.model_type import T5_FAMILY
    from .config.train_values import refuse_beyond_positions

    limit = getattr(model_config, "max_position_embeddings", None)
    if not isinstance(limit, int) or model_config.model_type in T5_FAMILY:  # T5: relative positions
        return
    for key, n in lengths.items():
        refuse_beyond_positions(key, n, limit)


def logical_numel(param) -> int:
    """The elements a parameter stands for: a bitsandbytes 4-bit weight is stored packed (two values a
    byte, in a flat tensor), and its quant_state keeps the shape it was quantized from."""
    shape = getattr(getattr(param, "quant_state", None), "shape", None)
    return math.prod(shape) if shape is not None else param.numel()


def parameter_counts(model) -> dict:
    total = sum(logical_numel(p) for p in model.parameters())
    trainable = sum(logical_numel(p) for p in model.parameters() if p.requires_grad)
    return {"params_total": total, "params_trainable": trainable}


def is_adapter_dir(name: str | None) -> bool:
    """A LoRA run's output (or checkpoint): adapter weights on a base model named in adapter_config.json."""
    path = resolve(name) if name else None
    return bool(path) and os.path.isfile(os.path.join(path, "adapter_config.json"))
