"""A classifier as model.onnx for onnxruntime, with dynamic batch and sequence length, beside its tokenizer,
config.json (id2label) and label_map.json; an encoder-decoder model as encoder.onnx and decoder.onnx
(onnx_seq2seq.py). Exported with torch's TorchScript-based exporter (dynamo=False): the dynamo exporter needs
onnxscript, and the graph of these models is the same either way."""

from __future__ import annotations

import os
import shutil
import warnings

import torch

from ..errors import UserError
from tasks.classification import LABEL_FILE

FILE_NAME = "model.onnx"
OPSET = 17


def check(run) -> None:
    if run.family not in ("classification", "seq2seq"):
        raise UserError(f"export: --format onnx takes a classification or seq2seq model; {run.path} is a "
                        f"{run.family} model (use --format safetensors or gguf)")
    try:
        import onnx  # noqa: F401 - torch's exporter needs it
    except ImportError:
        raise UserError("export: --format onnx needs the onnx package: pip install 'trainsuite[export]'") from None


def check_loaded(run, model, tokenizer) -> None:
    pass


class LogitsOnly(torch.nn.Module):
    """forward(input ids, mask[, segment ids]) -> logits: one named output instead of a ModelOutput."""

    def __init__(self, model, names):
        super().__init__()
        self.model, self.names = model, names

    def forward(self, *inputs):
        return self.model(**dict(zip(self.names, inputs))).logits


def write(run, model, tokenizer, folder: str, _unused=None) -> dict:
    if run.family == "seq2seq":
        from . import onnx_seq2seq

        details = onnx_seq2seq.write(model, tokenizer, folder, OPSET)
        model.config.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        return {**details, "opset": OPSET}
    names = [n for n in tokenizer.model_input_names if n in ("input_ids", "attention_mask", "token_type_ids")]
    sample = tokenizer(["a b", "a"], return_tensors="pt", padding=True)
    inputs = tuple(sample[n] for n in names)
    axes = {n: {0: "batch", 1: "sequence"} for n in names}
    axes["logits"] = {0: "batch"}
    with torch.no_grad(), warnings.catch_warnings():
        # the tracer notes each Python branch on a shape; the test feeds other batch sizes and lengths
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(LogitsOnly(model, names).eval(), inputs, os.path.join(folder, FILE_NAME), input_names=names,
                          output_names=["logits"], dynamic_axes=axes, opset_version=OPSET, dynamo=False)
    model.config.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    if os.path.isfile(os.path.join(run.path, LABEL_FILE)):
        shutil.copy2(os.path.join(run.path, LABEL_FILE), folder)
    return {"file": FILE_NAME, "inputs": names, "opset": OPSET}
