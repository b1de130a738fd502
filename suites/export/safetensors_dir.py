"""A model folder that transformers, vLLM, SGLang and TGI load as is: merged weights in the dtype asked,
the tokenizer with the chat template the run trained with, and a generation_config.json whose eos_token_id
lists every token a reply may end with (end of turn and eos). A server stops at generation_config's
eos_token_id; left at the base model's eos, a chat model trained to end its turns with <|im_end|> runs on
past them (LLaMA-Factory#7454)."""

from __future__ import annotations

import os
import shutil

from tasks.classification import LABEL_FILE
from tasks.instruction import end_of_turn_ids
from tasks.trained_chat import FORMAT_FILE

DTYPES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}


def check(run) -> None:
    pass  # every family


def check_loaded(run, model, tokenizer) -> None:
    pass


def stop_ids(tokenizer) -> list[int]:
    return end_of_turn_ids(tokenizer)


def write(run, model, tokenizer, folder: str, dtype: str | None) -> dict:
    import torch

    dtype = dtype or "bf16"
    model = model.to(getattr(torch, DTYPES[dtype]))
    details = {"dtype": dtype}
    if run.family == "sft":
        stops = stop_ids(tokenizer)
        gen = model.generation_config
        gen.eos_token_id = stops if len(stops) > 1 else stops[0]
        if tokenizer.pad_token_id is not None:
            gen.pad_token_id = tokenizer.pad_token_id
        details["eos_token_id"] = stops
        details["chat_template"] = bool(getattr(tokenizer, "chat_template", None))
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    for name in (FORMAT_FILE, LABEL_FILE):  # how predict reads prompts and names labels
        if os.path.isfile(os.path.join(run.path, name)):
            shutil.copy2(os.path.join(run.path, name), folder)
    return details
