"""`trainsuite merge RUN_DIR --output DIR`: fold a LoRA adapter into its base model.

The base is loaded unquantized (a QLoRA adapter is merged into full-precision weights), so the
output is a standalone model that AutoModelForCausalLM loads without peft.
"""

from __future__ import annotations

import json
import logging
import os

from ..errors import UserError

log = logging.getLogger("trainsuite")


def merge(run_dir: str, output: str) -> dict:
    cfg_file = os.path.join(run_dir, "adapter_config.json")
    if not os.path.isfile(cfg_file):
        raise UserError(f"merge: {run_dir}: no adapter_config.json (not a LoRA run directory)")
    if os.path.abspath(output) == os.path.abspath(run_dir):
        raise UserError("merge: --output must differ from RUN_DIR")
    with open(cfg_file) as fh:
        base = json.load(fh).get("base_model_name_or_path")
    if not base:
        raise UserError(f"merge: {cfg_file} names no base model (base_model_name_or_path)")
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(run_dir)
    try:
        model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    except (OSError, ValueError) as exc:
        raise UserError(f"merge: base model '{base}' could not be loaded: {str(exc).splitlines()[0]}") from None
    if len(tokenizer) > model.get_input_embeddings().num_embeddings:
        model.resize_token_embeddings(len(tokenizer))
    merged = PeftModel.from_pretrained(model, run_dir).merge_and_unload()
    os.makedirs(output, exist_ok=True)
    merged.save_pretrained(output)
    tokenizer.save_pretrained(output)
    log.info("merged %s into %s -> %s", run_dir, base, output)
    return {"merged_model": output, "base_model": base, "adapter": run_dir}
