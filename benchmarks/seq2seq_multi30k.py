"""Multi30k en->de: our seq2seq path against plain transformers.Seq2SeqTrainer, in one process run.

    python benchmarks/seq2seq_multi30k.py                       # train (configs/seq2seq-multi30k.yaml), then compare
    python benchmarks/seq2seq_multi30k.py --skip-train          # compare generation on the model in output_dir
    python benchmarks/seq2seq_multi30k.py KEY=VALUE ...         # config overrides (e.g. train.num_train_epochs=1)

Prints training wall time, then, on test_2016_flickr with the same model and the same generation
settings (generation.num_beams, generation.max_new_tokens): BLEU (sacreBLEU defaults, cased) and
generation wall time of (a) our length-sorted generation loop and (b) Seq2SeqTrainer.predict with
predict_with_generate=True, decoded the usual way (-100 replaced by pad first).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import sacrebleu  # noqa: E402
import torch  # noqa: E402

from suites import config  # noqa: E402
from suites.run import runner  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def sync():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("overrides", nargs="*")
    p.add_argument("--config", default=os.path.join(HERE, "..", "configs", "seq2seq-multi30k.yaml"))
    p.add_argument("--data", default=os.path.join(HERE, "..", "..", "shared", "data", "multi30k"))
    p.add_argument("--test", default="test_2016_flickr")
    p.add_argument("--skip-train", action="store_true")
    p.add_argument("--limit", type=int, default=None, help="only the first N test sentences")
    args = p.parse_args()

    cfg = config.load(args.config, args.overrides)
    report = {"config": os.path.abspath(args.config), "overrides": args.overrides,
              "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"}
    if not args.skip_train:
        start = time.perf_counter()
        results = runner.train(cfg, overwrite=True)
        report["train_wall_s"] = round(time.perf_counter() - start, 1)
        report["train_runtime_s"] = results.get("train_runtime_s")
        report["val_bleu"] = results.get("eval_bleu")
        cfg = config.load(args.config, args.overrides)

    src = os.path.join(args.data, f"{args.test}.en")
    tgt = os.path.join(args.data, f"{args.test}.de")
    cfg.data.eval = {"source": src, "target": tgt}
    cfg.data.max_eval_samples = args.limit
    _, _, tokenizer, trainer, data = runner.build(cfg, "eval")
    test = data["eval"]
    refs = test["target_text"]
    g = cfg.generation

    sync()
    start = time.perf_counter()
    ours = trainer.generate_texts(test)["hypotheses"]
    sync()
    report["ours"] = {"bleu": round(sacrebleu.corpus_bleu(ours, [refs]).score, 2),
                      "generation_s": round(time.perf_counter() - start, 2)}

    # The plain library path on the same model, data, batch size and generation settings.
    from transformers import Seq2SeqTrainer, Seq2SeqTrainingArguments

    plain_args = Seq2SeqTrainingArguments(
        output_dir=os.path.join(cfg.output_dir, "plain-predict"), report_to="none",
        per_device_eval_batch_size=g.batch_size or trainer.args.per_device_eval_batch_size,
        predict_with_generate=True, generation_num_beams=g.num_beams, bf16=trainer.args.bf16,
        dataloader_num_workers=trainer.args.dataloader_num_workers)
    model = trainer.model
    gen_config = trainer.generation_config(model)
    model.generation_config = gen_config
    plain = Seq2SeqTrainer(model=model, args=plain_args, processing_class=tokenizer,
                           data_collator=trainer.data_collator)
    plain_data = test.remove_columns(["source_text", "target_text"])
    sync()
    start = time.perf_counter()
    out = plain.predict(plain_data, max_new_tokens=g.max_new_tokens, num_beams=g.num_beams)
    sync()
    elapsed = time.perf_counter() - start
    preds = np.where(out.predictions != -100, out.predictions, tokenizer.pad_token_id)
    hyps = [t.strip() for t in tokenizer.batch_decode(preds, skip_special_tokens=True)]
    report["seq2seqtrainer_predict"] = {"bleu": round(sacrebleu.corpus_bleu(hyps, [refs]).score, 2),
                                        "generation_s": round(elapsed, 2)}
    report["generation_speedup"] = round(report["seq2seqtrainer_predict"]["generation_s"]
                                         / max(report["ours"]["generation_s"], 1e-9), 2)
    report.update(num_beams=g.num_beams, max_new_tokens=g.max_new_tokens, sentences=len(refs))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
