"""`trainsuite export RUN_DIR --format {safetensors,gguf,onnx} --output DIR`: what a run trained, in the
form a server or runtime loads.

    safetensors  every family: LoRA folded in, --dtype bf16 (default) | fp16 | fp32, the tokenizer with the
                 run's chat template, a generation_config.json that stops at every end-of-turn token
    gguf         decoder-only Llama / Mistral / Qwen2 for llama.cpp and Ollama, --quant f16 (default) | q8_0
    onnx         classifiers (model.onnx) and encoder-decoder models (encoder.onnx, decoder.onnx), for
                 onnxruntime (dynamic batch and lengths)

What can be refused (a family or tokenizer a format cannot hold, a non-empty --output without --force) is
refused before anything is written; the files go to a temporary folder beside --output that is renamed
into place, so a failed export leaves nothing. May import: suites.errors, suites.run.merge (the LoRA merge
and the staged output folder), tasks.
"""

from __future__ import annotations

import logging

from ..errors import UserError

log = logging.getLogger("trainsuite")

FORMATS = ("safetensors", "gguf", "onnx")
DTYPES = ("bf16", "fp16", "fp32")
QUANTS = ("f16", "q8_0")


def export(run_dir: str, fmt: str, output: str, dtype: str | None = None, quant: str | None = None,
           force: bool = False) -> dict:
    from ..run.merge import check_output, staged
    from . import source

    if fmt not in FORMATS:
        raise UserError(f"export: --format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if dtype is not None and fmt != "safetensors":
        raise UserError(f"export: --dtype is for --format safetensors; {fmt} is written as "
                        + ("--quant f16|q8_0" if fmt == "gguf" else "fp32"))
    if quant is not None and fmt != "gguf":
        raise UserError("export: --quant is for --format gguf; use --dtype for safetensors")
    if dtype is not None and dtype not in DTYPES:
        raise UserError(f"export: --dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    if quant is not None and quant not in QUANTS:
        raise UserError(f"export: --quant must be one of {', '.join(QUANTS)}, got {quant!r}")
    run = source.describe(run_dir)
    check_output(run_dir, output, force, command="export")
    if fmt == "gguf":
        from . import gguf_file as writer
    elif fmt == "onnx":
        from . import onnx_file as writer
    else:
        from . import safetensors_dir as writer
    writer.check(run)  # a family or tokenizer the format cannot hold: refused before any weight loads
    model, tokenizer = source.load(run)
    writer.check_loaded(run, model, tokenizer)
    with staged(output) as tmp:
        details = writer.write(run, model, tokenizer, tmp, dtype or quant)
    log.info("exported %s as %s -> %s", run_dir, fmt, output)
    return {"export": output, "format": fmt, "run": run_dir, "family": run.family, **details}
