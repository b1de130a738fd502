"""Data preparation time, phase by phase: ours (`runner.build(cfg, "train")` up to the trainer) against
the plain-library path on the same data, in one run. The model is not what is measured (it is built,
and shown, but kept small where the config allows).

    OMP_NUM_THREADS=1 python benchmarks/data_prep.py                         # all three cases, full size
    OMP_NUM_THREADS=1 python benchmarks/data_prep.py --case sft --sft-rows 2000 --repeats 1   # quick
    OMP_NUM_THREADS=1 python benchmarks/data_prep.py --limit 5000 --hash      # fingerprints of the encoded splits

Cases:
  classification  full SST-2 train (../shared/data/sst2), packaged MiniLM tokenizer, 2% hold-out
                  plain: datasets.load_dataset("csv") + train_test_split + Dataset.map(tokenizer, batched=True)
  seq2seq         full Multi30k train + val, tokenizer trained on the data (configs/seq2seq-multi30k.yaml)
                  plain: lines -> Dataset + Dataset.map(tokenizer(text, text_target)) with the tokenizer our
                  run trained (encode speed depends on the tokenizer's kind; compare "total - model - tokenizer")
  sft             synthetic chat conversations (messages, 2-8 turns), tiny Llama, tokenizer trained on the
                  data, packing on, loss on assistant turns
                  plain: trl.SFTTrainer's own preparation (tokenize with the assistant mask, pack: bfd)

Ours never reads the prepared-data cache here. Imports that both sides make on first use (deepspeed,
through accelerate) are made before anything is timed. Tokenizers run single-threaded here (TOKENIZERS_PARALLELISM=false unless set), for stable timings
on shared cores; a real run lets batched tokenizer calls (ours and the plain path's) use every core.

`--hash` prints a SHA-256 of every column of every encoded split (and of the packed trainer datasets
and the task's side outputs): the check that a speed-up changed no output.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import random
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
DATA = os.path.join(ROOT, "..", "shared", "data")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

TINY_LLAMA = {"model_type": "llama", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
              "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 1024,
              "tie_word_embeddings": False}
TINY_T5 = ["model.from_config.d_model=32", "model.from_config.d_ff=64", "model.from_config.num_layers=1",
           "model.from_config.num_decoder_layers=1", "model.from_config.num_heads=2", "model.from_config.d_kv=16"]
WORDS = ("the a of and to in is was it for on that with as at by this from be are have not or an they "
         "which you one had all were but we there can been has more if will when who so what no out up "
         "red green blue cat dog bird sun moon tree river stone fire house water light music city night "
         "apple table window garden paper number question answer system model data train token").split()


# ------------------------------------------------------------------ timing


class Phases:
    """Named wall-clock totals; `wrap` times every call of an attribute while a run lasts."""

    def __init__(self):
        self.t: dict[str, float] = {}
        self._patches = []

    @contextlib.contextmanager
    def phase(self, name):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.t[name] = self.t.get(name, 0.0) + time.perf_counter() - start

    def wrap(self, owner, attr, name):
        orig = getattr(owner, attr)
        phases = self

        def timed(*a, **kw):
            with phases.phase(name):
                return orig(*a, **kw)

        self._patches.append((owner, attr, owner.__dict__.get(attr, None) if isinstance(owner, type) else orig))
        setattr(owner, attr, timed)

    def unwrap(self):
        for owner, attr, orig in reversed(self._patches):
            if isinstance(owner, type) and orig is None:
                delattr(owner, attr)
            else:
                setattr(owner, attr, orig)
        self._patches = []


# ------------------------------------------------------------------ data


def limited_copy(path, limit, workdir, header=False):
    """The first `limit` data lines of a text file (for quick runs), or the file itself."""
    if not limit:
        return path
    out = os.path.join(workdir, os.path.basename(path))
    with open(path, encoding="utf-8") as src, open(out, "w", encoding="utf-8") as dst:
        for i, line in enumerate(src):
            if i >= limit + (1 if header else 0):
                break
            dst.write(line)
    return out


def chat_rows(n, seed):
    """Conversations of 2-8 turns (user/assistant alternating, a system turn now and then)."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        msgs = [{"role": "system", "content": "You are a helpful assistant."}] if rng.random() < 0.2 else []
        for t in range(rng.randint(2, 8)):
            words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 40)))
            msgs.append({"role": "user" if t % 2 == 0 else "assistant", "content": words.capitalize() + "."})
        if msgs[-1]["role"] != "assistant":  # most end in an answer
            msgs.append({"role": "assistant", "content": "Ok."})
        rows.append({"messages": msgs})
    return rows


def write_jsonl(path, rows):
    with open(path, "w", encoding="utf-8") as fh:
        for r in rows:
            fh.write(json.dumps(r) + "\n")
    return path


# ------------------------------------------------------------------ configs


def config_for(case, args, workdir):
    from suites import config

    out = os.path.join(workdir, "run")
    common = [f"output_dir={out}", "train.use_cpu=true", "train.report_to=none"]
    if case == "classification":
        train = limited_copy(os.path.join(DATA, "sst2", "train.tsv"), args.limit, workdir, header=True)
        return config.load(os.path.join(ROOT, "configs", "classification-sst2.yaml"),
                           common + [f"data.train={os.path.abspath(train)}"])
    if case == "seq2seq":
        m = os.path.join(DATA, "multi30k")
        src, tgt = (limited_copy(os.path.join(m, f"train.{x}"), args.limit, workdir) for x in ("en", "de"))
        return config.load(os.path.join(ROOT, "configs", "seq2seq-multi30k.yaml"),
                           common + TINY_T5 + [f"data.train.source={os.path.abspath(src)}",
                                               f"data.train.target={os.path.abspath(tgt)}"])
    n = args.limit or args.sft_rows
    train = write_jsonl(os.path.join(workdir, "sft_train.jsonl"), chat_rows(n, 0))
    eval_ = write_jsonl(os.path.join(workdir, "sft_eval.jsonl"), chat_rows(max(20, n // 40), 1))
    raw = {"task": "sft", "output_dir": out, "model": {"from_config": dict(TINY_LLAMA)},
           "tokenizer": {"train_from_data": True, "vocab_size": 2000},
           "data": {"train": train, "eval": eval_}, "sft": {"max_length": 1024, "packing": True},
           "train": {"per_device_train_batch_size": 8, "use_cpu": True, "report_to": "none",
                     "save_strategy": "no"}}
    return config.from_dict(raw, base_dir=workdir)


# ------------------------------------------------------------------ ours


def ours(cfg):
    """runner.build(cfg, "train"), its phases timed; (phases, family, task, tokenizer, trainer, encoded)."""
    import suites.modeling
    import suites.run.runner as runner
    import tasks.io
    from suites.family import family_for

    family = family_for(cfg)
    task_cls = family.task_cls
    p = Phases()
    p.wrap(tasks.io, "read_records", "read files")
    p.wrap(tasks.io, "_dataset", "rows -> Dataset")
    p.wrap(task_cls, "check", "check rows")
    if hasattr(task_cls, "pairs"):
        p.wrap(task_cls, "pairs", "pairs (seq2seq)")
    p.wrap(task_cls, "load", "load (total)")
    p.wrap(runner, "load_tokenizer", "tokenizer (load/train)")  # runner holds its own name for it
    p.wrap(task_cls, "setup", "setup")
    p.wrap(family.__class__, "build_model", "model (not measured)")
    p.wrap(task_cls, "encode", "encode")
    try:
        import suites.sft

        p.wrap(suites.sft, "pack_documents", "pack")
        p.wrap(suites.sft, "group_documents", "pack")
    except ImportError:
        pass
    cfg.data.prepared_cache = False  # preparation is what is measured: never a previous run's
    try:
        with p.phase("total"):
            fam, task, tok, trainer, encoded = runner.build(cfg, "train")
    finally:
        p.unwrap()
    t = p.t
    t["trainer init"] = t["total"] - sum(v for k, v in t.items() if k in (
        "load (total)", "tokenizer (load/train)", "setup", "model (not measured)", "encode"))
    t["load: other (split, select)"] = t["load (total)"] - sum(
        t.get(k, 0.0) for k in ("read files", "rows -> Dataset", "check rows", "pairs (seq2seq)"))
    t["total - model"] = t["total"] - t["model (not measured)"]
    t["total - model - tokenizer"] = t["total - model"] - t.get("tokenizer (load/train)", 0.0)
    return t, fam, task, tok, trainer, encoded


def fingerprints(task, trainer, encoded) -> dict:
    def h(values):
        return hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()[:16]

    out = {}
    for split, ds in encoded.items():
        out[f"encoded.{split}.features"] = h(str(ds.features))
        for col in ds.column_names:
            out[f"encoded.{split}.{col}"] = h(ds[col])
    for name, ds in (("trainer.train", trainer.train_dataset), ("trainer.eval", trainer.eval_dataset)):
        if ds is not None and ds is not encoded.get(name.split(".")[1]):
            out[f"{name}.features"] = h(str(ds.features))
            for col in ds.column_names:
                out[f"{name}.{col}"] = h(ds[col])
    for attr in ("labels", "class_weights", "eval_texts", "generation_rows", "stats", "problem_type"):
        if hasattr(task, attr):
            out[f"task.{attr}"] = h(getattr(task, attr))
    return out


# ------------------------------------------------------------------ plain libraries


def plain_classification(cfg, workdir):
    import datasets
    from transformers import (AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding, Trainer,
                              TrainingArguments)

    from suites.modeling import resolve

    d, p = cfg.data, Phases()
    with p.phase("total"):
        with p.phase("load (total)"):
            ds = datasets.load_dataset("csv", data_files=d.train, delimiter="\t", quoting=3, split="train",
                                       cache_dir=tempfile.mkdtemp(dir=workdir))
            parts = ds.train_test_split(test_size=d.eval_fraction, seed=cfg.seed)
        with p.phase("tokenizer (load/train)"):
            name = resolve(cfg.model.name_or_path)
            tok = AutoTokenizer.from_pretrained(name)
        with p.phase("model (not measured)"):
            model = AutoModelForSequenceClassification.from_pretrained(name, num_labels=2)
        with p.phase("encode"):
            enc = {k: v.map(lambda b: tok(b["text"], truncation=True, max_length=d.max_length), batched=True,
                            remove_columns=["text"]) for k, v in parts.items()}
        with p.phase("trainer init"):
            args = TrainingArguments(output_dir=os.path.join(workdir, "plain"), use_cpu=True, report_to="none")
            Trainer(model=model, args=args, train_dataset=enc["train"], eval_dataset=enc["test"],
                    data_collator=DataCollatorWithPadding(tok), processing_class=tok)
    return p.t


def plain_seq2seq(cfg, workdir, tok):
    """Seq2SeqTrainer's path on the same pairs, with the tokenizer our run trained (the encode time
    depends on the tokenizer's kind; training one is timed apart, on both sides)."""
    import datasets
    from transformers import (AutoConfig, AutoModelForSeq2SeqLM, DataCollatorForSeq2Seq, Seq2SeqTrainer,
                              Seq2SeqTrainingArguments)

    d, p = cfg.data, Phases()
    with p.phase("total"):
        with p.phase("load (total)"):
            def read(spec):
                cols = {}
                for side, path in (("source", spec["source"]), ("target", spec["target"])):
                    with open(path, encoding="utf-8") as fh:
                        cols[side] = fh.read().splitlines()
                return datasets.Dataset.from_dict(cols)

            splits = {"train": read(d.train), "eval": read(d.eval)}
        with p.phase("model (not measured)"):
            conf = dict(cfg.model.from_config)
            mc = AutoConfig.for_model(**conf, vocab_size=len(tok), pad_token_id=tok.pad_token_id,
                                      eos_token_id=tok.eos_token_id, decoder_start_token_id=tok.pad_token_id)
            model = AutoModelForSeq2SeqLM.from_config(mc)
        with p.phase("encode"):
            def tokenize(b):
                return tok(b["source"], text_target=b["target"], truncation=True, max_length=d.max_source_length)

            enc = {k: v.map(tokenize, batched=True, remove_columns=["source", "target"]) for k, v in splits.items()}
        with p.phase("trainer init"):
            args = Seq2SeqTrainingArguments(output_dir=os.path.join(workdir, "plain"), use_cpu=True, report_to="none")
            Seq2SeqTrainer(model=model, args=args, train_dataset=enc["train"], eval_dataset=enc["eval"],
                           data_collator=DataCollatorForSeq2Seq(tok, model=model), processing_class=tok)
    return p.t


def plain_sft(cfg, workdir, tokenizer):
    """trl.SFTTrainer preparing the same files itself (tokenizer: the one our run trained, as trl has none)."""
    import datasets
    import trl
    from transformers import AutoConfig, AutoModelForCausalLM

    p = Phases()
    with p.phase("total"):
        with p.phase("load (total)"):
            ds = {k: datasets.load_dataset("json", data_files=getattr(cfg.data, k), split="train",
                                           cache_dir=tempfile.mkdtemp(dir=workdir)) for k in ("train", "eval")}
        with p.phase("model (not measured)"):
            mc = AutoConfig.for_model(**dict(cfg.model.from_config), vocab_size=len(tokenizer),
                                      pad_token_id=tokenizer.pad_token_id)
            model = AutoModelForCausalLM.from_config(mc)
        with p.phase("trainer init (tokenize + pack)"):
            args = trl.SFTConfig(output_dir=os.path.join(workdir, "plain"), use_cpu=True, report_to="none",
                                 packing=True, max_length=cfg.sft.max_length, assistant_only_loss=True, bf16=False)
            trl.SFTTrainer(model=model, args=args, train_dataset=ds["train"], eval_dataset=ds["eval"],
                           processing_class=tokenizer)
    return p.t


# ------------------------------------------------------------------ main


def warm_shared_imports(case):
    """Import once, before anything is timed, what both sides import on first use (the Trainer's
    accelerate imports deepspeed when it is installed: ~0.4 s that only the first side would pay)."""
    import importlib.util

    import transformers  # noqa: F401
    from accelerate.utils import is_deepspeed_available

    if is_deepspeed_available() and importlib.util.find_spec("deepspeed"):
        import deepspeed  # noqa: F401
    if case == "sft":
        import trl  # noqa: F401


def run_case(case, args):
    import datasets

    datasets.disable_progress_bars()
    warm_shared_imports(case)
    ours_runs, plain_runs, hashes = [], [], None
    for r in range(args.repeats):
        with tempfile.TemporaryDirectory(dir=args.workdir) as workdir:
            cfg = config_for(case, args, workdir)
            t, fam, task, tok, trainer, encoded = ours(cfg)
            ours_runs.append(t)
            if args.hash and hashes is None:
                hashes = fingerprints(task, trainer, encoded)
            rows = {k: len(v) for k, v in encoded.items()}
            del trainer, fam
            if not args.no_plain:
                if case == "classification":
                    plain_runs.append(plain_classification(cfg, workdir))
                elif case == "seq2seq":
                    plain_runs.append(plain_seq2seq(cfg, workdir, tok))
                else:
                    try:
                        plain_runs.append(plain_sft(cfg, workdir, tok))
                    except Exception as exc:  # a trl version without assistant_only_loss, ...
                        print(f"  plain trl path failed: {type(exc).__name__}: {str(exc)[:200]}")
                        args.no_plain = True
        print(f"  {case} repeat {r + 1}/{args.repeats}: ours {t['total - model']:.2f}s"
              + (f", plain {plain_runs[-1]['total'] - plain_runs[-1].get('model (not measured)', 0):.2f}s"
                 if plain_runs and len(plain_runs) == r + 1 else ""), flush=True)
    return ours_runs, plain_runs, hashes, rows


def median_table(case, rows, ours_runs, plain_runs):
    def med(runs, k):
        vals = [r[k] for r in runs if k in r]
        return statistics.median(vals) if vals else None

    keys = list(dict.fromkeys(k for r in ours_runs + plain_runs for k in r))
    order = ["read files", "rows -> Dataset", "check rows", "pairs (seq2seq)", "load: other (split, select)",
             "load (total)", "tokenizer (load/train)", "setup", "encode", "pack", "trainer init",
             "trainer init (tokenize + pack)", "model (not measured)", "total", "total - model",
             "total - model - tokenizer"]
    keys = [k for k in order if k in keys] + [k for k in keys if k not in order]
    print(f"\n{case}: rows {rows}; median of {len(ours_runs)} (seconds)")
    print(f"  {'phase':34s} {'ours':>8s} {'plain':>8s}")
    for k in keys:
        o, p = med(ours_runs, k), med(plain_runs, k)
        if k.startswith("total - model") and plain_runs:
            drop = ("model (not measured)",) + (("tokenizer (load/train)",) if k.endswith("tokenizer") else ())
            p = statistics.median(r["total"] - sum(r.get(x, 0) for x in drop) for r in plain_runs)
        print(f"  {k:34s} {'' if o is None else f'{o:8.2f}':>8s} {'' if p is None else f'{p:8.2f}':>8s}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--case", choices=["classification", "seq2seq", "sft", "all"], default="all")
    ap.add_argument("--limit", type=int, default=None, help="first N training rows only (quick runs)")
    ap.add_argument("--sft-rows", type=int, default=20000, help="synthetic SFT conversations (default 20000)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-plain", action="store_true", help="time ours only")
    ap.add_argument("--hash", action="store_true", help="print fingerprints of the encoded splits")
    ap.add_argument("--hash-out", help="write the fingerprints as JSON to this file")
    ap.add_argument("--json-out", help="write every repeat's phase timings as JSON to this file")
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args(argv)
    import logging

    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("trainsuite").setLevel(logging.ERROR)
    cases = ["classification", "seq2seq", "sft"] if args.case == "all" else [args.case]
    all_hashes, raw = {}, {}
    for case in cases:
        ours_runs, plain_runs, hashes, rows = run_case(case, args)
        median_table(case, rows, ours_runs, plain_runs)
        raw[case] = {"rows": rows, "ours": ours_runs, "plain": plain_runs}
        if hashes:
            all_hashes[case] = hashes
    if args.json_out:
        with open(args.json_out, "w") as fh:
            json.dump(raw, fh, indent=1)
    if args.hash:
        print(json.dumps(all_hashes, indent=1, sort_keys=True))
        if args.hash_out:
            with open(args.hash_out, "w") as fh:
                json.dump(all_hashes, fh, indent=1, sort_keys=True)


if __name__ == "__main__":
    main()
