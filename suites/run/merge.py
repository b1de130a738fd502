"""`trainsuite merge RUN_DIR --output DIR`: fold a LoRA adapter into its base model.

The base is loaded unquantized (a QLoRA adapter is merged into full-precision weights), so the
output is a standalone model that AutoModelForCausalLM loads without peft. An existing non-empty
--output is refused unless forced, and the model is written to a temporary folder beside it that
is renamed into place: a failed merge leaves no half-written model, and no other run's files mixed in.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile

from ..errors import UserError
from ..file_modes import share_like_other_files, umask

log = logging.getLogger("trainsuite")


def check_output(run_dir: str, output: str, force: bool, command: str = "merge") -> None:
    """Refuse what writing into `output` would destroy or mix, before any model loads (merge, export)."""
    out, run = os.path.abspath(output), os.path.abspath(run_dir)
    if out == run:
        raise UserError(f"{command}: --output must differ from RUN_DIR")
    if run.startswith(out.rstrip(os.sep) + os.sep):
        raise UserError(f"{command}: --output {output} holds RUN_DIR {run_dir}; choose another folder")
    if os.path.exists(output) and not os.path.isdir(output):
        raise UserError(f"{command}: --output {output} is a file; choose a folder")
    if os.path.isdir(output) and os.listdir(output) and not force:
        raise UserError(f"{command}: --output {output} exists and is not empty; pass --force to replace it")


def move_into_place(tmp: str, output: str) -> None:
    if os.path.isdir(output) and os.listdir(output):  # --force: the old folder goes only now
        shutil.rmtree(output)
    os.replace(tmp, output)  # an empty folder is replaced too


@contextlib.contextmanager
def staged(output: str):
    """A temporary folder beside `output` to write into; renamed into place when the block ends without
    an error, removed when it raises (merge and export)."""
    parent = os.path.dirname(os.path.abspath(output))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(os.path.abspath(output))}.partial-", dir=parent)
    try:
        yield tmp
        share_like_other_files(tmp)  # weights 0644 like the other files, not safetensors' 0600
        os.chmod(tmp, 0o777 & ~umask())  # mkdtemp makes it 0700; the folder is shared like any other
        move_into_place(tmp, output)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def load_merged(run_dir: str, command: str = "merge"):
    """(the adapter folded into its fp32 base, the run's tokenizer, the base's name) of a LoRA run."""
    cfg_file = os.path.join(run_dir, "adapter_config.json")
    with open(cfg_file) as fh:
        base = json.load(fh).get("base_model_name_or_path")
    if not base:
        raise UserError(f"{command}: {cfg_file} names no base model (base_model_name_or_path)")
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(run_dir)
    try:
        model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    except (OSError, ValueError) as exc:
        raise UserError(f"{command}: base model '{base}' could not be loaded: {str(exc).splitlines()[0]}") from None
    if len(tokenizer) > model.get_input_embeddings().num_embeddings:
        model.resize_token_embeddings(len(tokenizer))
    return PeftModel.from_pretrained(model, run_dir).merge_and_unload(), tokenizer, base


def merge(run_dir: str, output: str, force: bool = False) -> dict:
    cfg_file = os.path.join(run_dir, "adapter_config.json")
    if not os.path.isfile(cfg_file):
        raise UserError(f"merge: {run_dir}: no adapter_config.json (not a LoRA run directory)")
    check_output(run_dir, output, force)
    merged, tokenizer, base = load_merged(run_dir)
    with staged(output) as tmp:
        merged.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        for name in ("sft_format.json",):  # how predict renders prompts for this model (tasks/trained_chat.py)
            if os.path.isfile(os.path.join(run_dir, name)):
                shutil.copy2(os.path.join(run_dir, name), tmp)
    log.info("merged %s into %s -> %s", run_dir, base, output)
    return {"merged_model": output, "base_model": base, "adapter": run_dir}
