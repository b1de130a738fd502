"""Config-time checks of model.gguf_file: the file exists (in a local folder or package), transformers
reads its architecture, and the task fits it. The header is read only while the file has not been
converted yet (tasks/gguf_model.py): a converted file was readable, and later runs pay nothing here."""

from __future__ import annotations

import json
import os

from ..errors import UserError


def check_gguf(cfg) -> None:
    from tasks import gguf_model
    from tasks.io import resolve_model

    m = cfg.model
    if m.name_or_path is None:
        raise UserError("config: model.gguf_file needs model.name_or_path (the folder, hub repo or package:NAME "
                        "that holds the file)")
    folder = resolve_model(m.name_or_path)
    if not os.path.isdir(folder):
        return  # a hub repo: the file is fetched, and checked, when the model is first loaded
    path = gguf_model.locate(folder, m.gguf_file)
    entry = gguf_model.cached(path)
    if entry:
        with open(os.path.join(entry, gguf_model.DONE), encoding="utf-8") as fh:
            arch = json.load(fh)["architecture"]
    else:
        arch = gguf_model.check_readable(path)
    encoder_decoder = "t5" in arch
    if cfg.task == "seq2seq" and not encoder_decoder:
        raise UserError(f"config: model.gguf_file {m.gguf_file} is a decoder-only '{arch}' model; task: seq2seq "
                        "needs an encoder-decoder (use task: sft for a causal LM)")
    if cfg.task == "sft" and encoder_decoder:
        raise UserError(f"config: model.gguf_file {m.gguf_file} is an encoder-decoder '{arch}' model; task: sft "
                        "needs a decoder-only LM")
