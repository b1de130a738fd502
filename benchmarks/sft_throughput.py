"""SFT training throughput: our default config against plain trl.SFTTrainer, same model, same data,
one process, one table (protocol: ../shared/DESIGN.md, "Benchmark protocol (GPU)").

    python benchmarks/sft_throughput.py                                  # Qwen2-0.5B shape, full fine-tune
    python benchmarks/sft_throughput.py --shape qwen2-1.5b --peft lora   # LoRA r 16, all linear layers
    python benchmarks/sft_throughput.py --shape qwen2-1.5b --peft qlora --batch 4
    python benchmarks/sft_throughput.py --tiny                           # CPU smoke run, under a minute

A model of the named shape with random weights (speed depends only on the shape), bf16 on a GPU,
synthetic token sequences with lognormal lengths (median 300, sigma 0.9, clipped to 16..max length
2048). After --warmup steps (5), --steps optimizer steps are timed; reported: real (non-pad) tokens
per second and peak GPU memory (the process's peak RSS on CPU). Settings (--settings):

  ours            our default SFT config: nothing set beyond model, data and sft.max_length
  ours_padding    ours with sft.packing=false, batch --batch (the wrapper against trl_padding)
  trl_padding     trl.SFTTrainer defaults: padded batches of --batch
  trl_bfd         trl bfd packing (padding-free), SDPA, batch --batch
  trl_best        trl bfd packing + flex attention (CUDA) + Liger kernels (when installed), batch --batch

Gradient checkpointing is off everywhere. The data are the same token ids for every setting: ours
reads them as whitespace-separated words of a word-level tokenizer with one word per token id.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import math
import os
import resource
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

QWEN2 = {"model_type": "qwen2", "vocab_size": 151936, "tie_word_embeddings": True, "max_position_embeddings": 32768,
         "rope_theta": 1000000.0, "rms_norm_eps": 1e-6}
SHAPES = {
    "qwen2-0.5b": {**QWEN2, "hidden_size": 896, "num_hidden_layers": 24, "num_attention_heads": 14,
                   "num_key_value_heads": 2, "intermediate_size": 4864},
    "qwen2-1.5b": {**QWEN2, "hidden_size": 1536, "num_hidden_layers": 28, "num_attention_heads": 12,
                   "num_key_value_heads": 2, "intermediate_size": 8960},
    "tiny": {"model_type": "llama", "vocab_size": 2048, "hidden_size": 64, "num_hidden_layers": 2,
             "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 128,
             "max_position_embeddings": 512, "tie_word_embeddings": False},
}
SPECIAL = ["<pad>", "<unk>", "</s>"]  # ids 0, 1, 2
GIB = 1024**3


# ------------------------------------------------------------------ data and tokenizer


def lengths(n: int, median: float, sigma: float, low: int, high: int, seed: int) -> list[int]:
    import numpy as np

    rng = np.random.default_rng(seed)
    return np.clip(np.round(rng.lognormal(math.log(median), sigma, n)), low, high).astype(int).tolist()


def documents(n: int, vocab: int, median: float, max_len: int, seed: int) -> list[list[int]]:
    """Token ids of n documents, each ending with </s> (id 2), lengths including it."""
    import numpy as np

    rng = np.random.default_rng(seed + 1)
    return [rng.integers(len(SPECIAL), vocab, n_tok - 1).tolist() + [2]
            for n_tok in lengths(n, median, 0.9, 16, max_len, seed)]


def word_tokenizer(vocab: int, path: str):
    """A word-level tokenizer whose words t<i> are the token ids i: exact control of the lengths."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = {t: i for i, t in enumerate(SPECIAL)}
    words.update({f"t{i}": i for i in range(len(SPECIAL), vocab)})
    tok = Tokenizer(models.WordLevel(words, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>", eos_token="</s>")
    fast.save_pretrained(path)
    return fast


def as_text(doc: list[int]) -> str:
    return " ".join(f"t{i}" for i in doc[:-1]) + "</s>"  # our text format appends the eos token itself


# ------------------------------------------------------------------ measuring


class Meter:
    """Real tokens (input ids that are not padding) and time over the steps after the warm-up."""

    def __init__(self, model, warmup: int, steps: int, pad_id: int = 0):
        import torch
        from transformers import TrainerCallback

        self.warmup, self.steps, self.pad_id = warmup, steps, pad_id
        self.tokens = None
        self.on, self.t0, self.t1 = False, None, None
        meter = self

        def count(module, args, kwargs):
            if meter.on and module.training:
                ids = kwargs.get("input_ids", args[0] if args else None)
                real = ids != meter.pad_id
                if kwargs.get("attention_mask") is not None:
                    real = real & kwargs["attention_mask"].bool()
                n = real.sum()
                meter.tokens = n if meter.tokens is None else meter.tokens + n

        self.handle = model.register_forward_pre_hook(count, with_kwargs=True)

        class Callback(TrainerCallback):
            def on_step_end(self, args, state, control, **kw):
                if state.global_step == meter.warmup:
                    _sync()
                    meter.on, meter.t0 = True, time.perf_counter()
                elif state.global_step == meter.warmup + meter.steps:
                    _sync()
                    meter.on, meter.t1 = False, time.perf_counter()

        self.callback = Callback()
        self._torch = torch

    def result(self) -> dict:
        self.handle.remove()
        tokens = int(self.tokens) if self.tokens is not None else 0
        dt = self.t1 - self.t0
        return {"tokens_per_s": round(tokens / dt, 1), "timed_tokens": tokens, "timed_s": round(dt, 3),
                "tokens_per_step": round(tokens / self.steps), **_peak()}


def _sync():
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _peak() -> dict:
    import torch

    if torch.cuda.is_available():
        return {"peak_gib": round(torch.cuda.max_memory_allocated() / GIB, 2)}
    return {"peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2, 2)}


def _fresh():
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


# ------------------------------------------------------------------ the two paths


def run_ours(setting: str, a, work: str, data_file: str, tok_dir: str, model_dir: str | None) -> dict:
    """Our runner, from a config that names only model, data and sft.max_length (plus benchmark plumbing:
    step count, no checkpoints, no logging)."""
    import torch

    from suites import config

    from suites.run import runner

    raw = {"task": "sft", "output_dir": os.path.join(work, setting), "seed": a.seed,
           "tokenizer": {"name_or_path": tok_dir}, "data": {"train": data_file},
           "sft": {"max_length": a.max_length},
           "train": {"max_steps": a.warmup + a.steps, "save_strategy": "no", "logging_steps": 10**6,
                     "report_to": "none", "disable_tqdm": True}}
    raw["model"] = {"name_or_path": model_dir} if model_dir else {"from_config": dict(SHAPES[a.shape])}
    if a.peft:
        raw["peft"] = {"r": 16, "alpha": 32, "dropout": 0.05, "target_modules": "all-linear"}
    if a.peft == "qlora":
        raw["quantization"] = {"bits": 4}
    if setting == "ours_padding":
        raw["sft"]["packing"] = False
        raw["train"]["per_device_train_batch_size"] = a.batch
    cfg = config.from_dict(raw)
    torch.manual_seed(a.seed)
    _, _, tokenizer, trainer, _ = runner.build(cfg, "train")
    meter = Meter(trainer.model, a.warmup, a.steps, tokenizer.pad_token_id)
    trainer.add_callback(meter.callback)
    trainer.train()
    out = meter.result()
    out.update(attention=trainer.model.config._attn_implementation, packing=cfg.sft.packing,
               liger=bool(trainer.args.use_liger_kernel), batch=f"{trainer.args.per_device_train_batch_size}"
               + (" bins" if cfg.sft.packing and not cfg.sft.batch_tokens else ""))
    del trainer
    return out


def _model(a, attn: str, model_dir: str | None):
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(a.seed)
    if a.peft == "qlora":
        from transformers import BitsAndBytesConfig

        bnb = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                 bnb_4bit_compute_dtype=torch.bfloat16)
        return AutoModelForCausalLM.from_pretrained(model_dir, quantization_config=bnb, dtype=torch.bfloat16,
                                                    attn_implementation=attn)
    shape = {k: v for k, v in SHAPES[a.shape].items() if k != "model_type"}
    config = AutoConfig.for_model(SHAPES[a.shape]["model_type"], pad_token_id=0, eos_token_id=2, **shape)
    return AutoModelForCausalLM.from_config(config, attn_implementation=attn)


def run_trl(setting: str, a, work: str, docs: list[list[int]], tokenizer, model_dir: str | None) -> dict:
    """What a user writes with trl alone."""
    import datasets
    import torch
    import trl

    cuda = torch.cuda.is_available()
    packed = setting in ("trl_bfd", "trl_best")
    attn = "flex_attention" if setting == "trl_best" and cuda else "sdpa"
    liger = setting == "trl_best" and cuda and importlib.util.find_spec("liger_kernel") is not None
    model = _model(a, attn, model_dir)
    peft_config = None
    if a.peft:
        from peft import LoraConfig

        peft_config = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear",
                                 task_type="CAUSAL_LM")
    args = trl.SFTConfig(output_dir=os.path.join(work, setting), per_device_train_batch_size=a.batch,
                         max_length=a.max_length, packing=packed, packing_strategy="bfd",
                         gradient_checkpointing=False, bf16=cuda and torch.cuda.is_bf16_supported(),
                         use_liger_kernel=liger, max_steps=a.warmup + a.steps, save_strategy="no",
                         logging_steps=10**6, report_to="none", disable_tqdm=True, seed=a.seed,
                         use_cpu=not cuda)
    train = datasets.Dataset.from_dict({"input_ids": docs})
    trainer = trl.SFTTrainer(model=model, args=args, train_dataset=train, processing_class=tokenizer,
                             peft_config=peft_config)
    meter = Meter(trainer.model, a.warmup, a.steps, tokenizer.pad_token_id)
    trainer.add_callback(meter.callback)
    trainer.train()
    out = meter.result()
    out.update(attention=attn, packing=packed, liger=liger, batch=str(a.batch) + (" bins" if packed else ""))
    del trainer, model
    return out


# ------------------------------------------------------------------ main


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shape", choices=["qwen2-0.5b", "qwen2-1.5b"], default="qwen2-0.5b")
    p.add_argument("--peft", choices=["lora", "qlora"], default=None)
    p.add_argument("--steps", type=int, default=None, help="timed steps (default 30; --tiny 10)")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--batch", type=int, default=8, help="batch size of the trl settings and of ours_padding")
    p.add_argument("--max-length", type=int, default=None, help="default 2048; --tiny 256")
    p.add_argument("--median", type=float, default=None, help="median document length (default 300, scaled "
                   "with --max-length / 2048)")
    p.add_argument("--settings", default=None,
                   help="comma-separated; default ours,trl_padding,trl_best (--tiny: all five)")
    p.add_argument("--repeats", type=int, default=1, help="run the settings this many times, report the median")
    p.add_argument("--tiny", action="store_true", help="tiny Llama shape, CPU-sized: proves the script works")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, help="also write the rows to this file")
    a = p.parse_args(argv)
    if a.tiny:
        a.shape = "tiny"
        if a.peft == "qlora":
            p.error("--tiny runs on CPU; QLoRA needs a GPU")
    a.max_length = a.max_length or (256 if a.tiny else 2048)
    a.steps = a.steps or (10 if a.tiny else 30)
    a.median = a.median or 300 * a.max_length / 2048
    settings = (a.settings or ("ours,ours_padding,trl_padding,trl_bfd,trl_best" if a.tiny
                               else "ours,trl_padding,trl_best")).split(",")
    import statistics

    import torch
    import transformers
    import trl

    transformers.logging.set_verbosity_error()
    cuda = torch.cuda.is_available()
    device = torch.cuda.get_device_name() if cuda else "cpu"
    vocab = SHAPES[a.shape]["vocab_size"]
    budget = 8 * a.max_length  # our default: 8 bins of max_length
    mean_len = a.median * math.exp(0.9**2 / 2)
    n_docs = int((a.warmup + a.steps) * budget / mean_len * 1.3) + 64
    docs = documents(n_docs, vocab, a.median, a.max_length, a.seed)
    print(f"device: {device}; torch {torch.__version__}, transformers {transformers.__version__}, trl "
          f"{trl.__version__}; shape {a.shape}{' + ' + a.peft if a.peft else ''}; {n_docs} documents, "
          f"{sum(map(len, docs))} tokens, median length {sorted(map(len, docs))[len(docs) // 2]}, max length "
          f"{a.max_length}; warm-up {a.warmup} steps, timed {a.steps} steps", flush=True)
    rows = {s: [] for s in settings}
    with tempfile.TemporaryDirectory() as work:
        tok_dir = os.path.join(work, "tokenizer")
        tokenizer = word_tokenizer(vocab, tok_dir)
        data_file = os.path.join(work, "train.jsonl")
        with open(data_file, "w") as fh:
            for d in docs:
                fh.write(json.dumps({"text": as_text(d)}) + "\n")
        model_dir = None
        if a.peft == "qlora":  # quantization loads pretrained weights: save the random ones once
            model_dir = os.path.join(work, "model")
            a_full = argparse.Namespace(**{**vars(a), "peft": None})
            _model(a_full, "sdpa", None).to(torch.bfloat16).save_pretrained(model_dir)
            tokenizer.save_pretrained(model_dir)
        for _ in range(a.repeats):
            for s in settings:
                _fresh()
                t0 = time.perf_counter()
                if s.startswith("ours"):
                    row = run_ours(s, a, work, data_file, tok_dir, model_dir)
                else:
                    row = run_trl(s, a, work, docs, tokenizer, model_dir)
                row = {"setting": s, **row, "wall_s": round(time.perf_counter() - t0, 1)}
                rows[s].append(row)
                print(json.dumps(row), flush=True)
    table = []
    for s in settings:
        best = dict(rows[s][len(rows[s]) // 2])
        best["tokens_per_s"] = statistics.median(r["tokens_per_s"] for r in rows[s])
        best["all_tokens_per_s"] = [r["tokens_per_s"] for r in rows[s]]
        table.append(best)
    mem = "peak_gib" if cuda else "peak_rss_gib"
    print(f"\n| setting | attention | packing | batch | Liger | tokens/step | real tokens/s | {mem} |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in table:
        print(f"| {r['setting']} | {r['attention']} | {r['packing']} | {r['batch']} | {r['liger']} | "
              f"{r['tokens_per_step']:,} | {r['tokens_per_s']:,.0f} | {r[mem]} |")
    if a.json:
        with open(a.json, "w") as fh:
            json.dump({"device": device, "args": vars(a), "rows": table}, fh, indent=2)
    return table


if __name__ == "__main__":
    main()
