"""Config-time checks of distributed settings (DeepSpeed, FSDP, context parallelism) against the rest
of the run config; called by validate.py. Each rule fails with one line saying what to set.

Presets: `train.deepspeed: zero2 | zero3 | zero3-offload` and `train.fsdp_config: fsdp2` name the JSON
files in suites/config/presets/ (shipped inside the package, so a plain wheel install finds them; scripts/ links
to them). Their "auto" fields are filled by transformers from the `train:` block.
"""

from __future__ import annotations

import importlib.util
import json
import os

from ..errors import UserError

PRESETS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "presets")
DEEPSPEED_PRESETS = {"zero2": "ds_zero2.json", "zero3": "ds_zero3.json", "zero3-offload": "ds_zero3_offload.json"}
FSDP_PRESETS = {"fsdp2": "fsdp2.json"}
DEEPSPEED_INSTALL = "pip install 'trainsuite[deepspeed]' (or pip install deepspeed)"


def preset_path(name: str, presets: dict) -> str | None:
    return os.path.join(PRESETS_DIR, presets[name]) if name in presets else None


def _json_setting(value, key: str):
    """A dict from an inline mapping or a JSON file path (None when neither)."""
    if isinstance(value, dict):
        return value
    if isinstance(value, str):
        if not os.path.isfile(value):
            raise UserError(f"config: {key}: file not found: {value} (or a preset: "
                            f"{', '.join(DEEPSPEED_PRESETS if 'deepspeed' in key else FSDP_PRESETS)})")
        try:
            with open(value, encoding="utf-8") as fh:
                return json.load(fh)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise UserError(f"config: {key}: {value} is not valid JSON ({exc})") from None
    return None


def zero_stage(train: dict) -> int | None:
    ds = _json_setting(train.get("deepspeed"), "train.deepspeed")
    if ds is None:
        return None
    return int((ds.get("zero_optimization") or {}).get("stage", 0))


def fsdp_settings(train: dict) -> dict | None:
    """The fsdp_config mapping when FSDP is on, else None."""
    if not train.get("fsdp"):
        return None
    return _json_setting(train.get("fsdp_config"), "train.fsdp_config") or {}


def context_parallel_size(train: dict) -> int:
    pc = train.get("parallelism_config")
    if pc is None:
        return 1
    get = pc.get if isinstance(pc, dict) else lambda k, d=None: getattr(pc, k, d)
    return int(get("cp_size", 1) or 1) * int(get("sp_size", 1) or 1)


def _checkpointing(train: dict) -> tuple[bool, dict]:
    on = bool(train.get("gradient_checkpointing") or train.get("activation_checkpointing"))
    key = "activation_checkpointing_kwargs" if "activation_checkpointing_kwargs" in train else \
        "gradient_checkpointing_kwargs"
    return on, key


def validate_distributed(cfg) -> None:
    t = cfg.train
    # presets by name
    if isinstance(t.get("deepspeed"), str) and t["deepspeed"] in DEEPSPEED_PRESETS:
        t["deepspeed"] = preset_path(t["deepspeed"], DEEPSPEED_PRESETS)
    if isinstance(t.get("fsdp_config"), str) and t["fsdp_config"] in FSDP_PRESETS:
        t["fsdp_config"] = preset_path(t["fsdp_config"], FSDP_PRESETS)
    if t.get("fsdp") and t.get("fsdp_config") is None:
        t["fsdp_config"] = preset_path("fsdp2", FSDP_PRESETS)

    stage = zero_stage(t)
    fsdp = fsdp_settings(t)
    if stage is not None and importlib.util.find_spec("deepspeed") is None:
        raise UserError(f"config: train.deepspeed needs the deepspeed package: {DEEPSPEED_INSTALL}")
    if stage is not None and fsdp is not None:
        raise UserError("config: train.deepspeed and train.fsdp exclude each other; keep one")
    sharded = stage == 3 or fsdp is not None
    engine = "DeepSpeed ZeRO-3" if stage == 3 else "FSDP"

    # QLoRA: only 4-bit weights can be sharded, stored in the dtype of the other weights
    # (bnb_4bit_quant_storage, set by suites/modeling.py); fp16 mixes storage dtypes.
    if cfg.quantization is not None and sharded:
        if cfg.quantization.bits != 4:
            raise UserError(f"config: QLoRA with {engine} needs quantization.bits=4 (8-bit weights cannot be "
                            "sharded); or use DeepSpeed ZeRO-2 / plain DDP, which keep a whole 8-bit copy per GPU")
        if t.get("fp16"):
            raise UserError(f"config: QLoRA with {engine} needs train.bf16=true (the 4-bit weights are stored "
                            "as bf16 to be sharded); train.fp16 is not supported")
        if fsdp is not None and fsdp.get("cpu_offload") and int(fsdp.get("version", 2)) == 1:
            raise UserError("config: QLoRA with FSDP1 cpu_offload is not supported; use fsdp_config.version=2")

    # LoRA with FSDP1: frozen and trainable weights share a flat parameter unless use_orig_params
    if cfg.peft is not None and fsdp is not None and int(fsdp.get("version", 2)) == 1:
        if str(fsdp.get("use_orig_params", True)).lower() == "false":
            raise UserError("config: LoRA with FSDP1 needs train.fsdp_config.use_orig_params=true (frozen and "
                            "trainable weights share flat parameters), or FSDP2 (fsdp_config.version=2)")

    # packing with context parallelism: CP splits each row along the sequence and masks causally
    # across the whole row, so packed documents would attend to each other
    if cfg.task == "sft" and cfg.sft.packing and context_parallel_size(t) > 1:
        raise UserError("config: sft.packing with context parallelism (train.parallelism_config cp_size/sp_size "
                        "> 1) would let packed documents attend to each other; set sft.packing=false or cp_size=1")

    # gradient checkpointing with ZeRO-3 and PEFT: reentrant checkpointing loses the gradients of the
    # adapters (frozen inputs) and re-gathers ZeRO-3 parameters out of order
    on, key = _checkpointing(t)
    if on and stage == 3 and cfg.peft is not None:
        kwargs = dict(t.get(key) or {})
        if kwargs.get("use_reentrant") is True:
            raise UserError(f"config: gradient checkpointing with DeepSpeed ZeRO-3 and peft needs "
                            f"train.{key}.use_reentrant=false")
        kwargs["use_reentrant"] = False
        t[key] = kwargs

    if t.get("auto_find_batch_size") and (stage is not None or fsdp is not None):
        raise UserError(f"config: train.auto_find_batch_size does not work with "
                        f"{'DeepSpeed' if stage is not None else 'FSDP'} (the engine is built for one batch size "
                        "and a rank that shrinks its batch alone stalls the others); set "
                        "train.per_device_train_batch_size")
