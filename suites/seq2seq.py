"""Seq2seq family: encoder-decoder models (T5, BART, Marian, mT5 ...) judged by what they generate.

Evaluation is generation, done here rather than through Trainer.evaluation_loop: rows are sorted by
source length (longest first, so a batch too large for memory fails at once and is halved), each
batch is generated and decoded right away (no logits are kept), and the original order is restored.
Metrics compare the decoded hypotheses with the raw reference strings; label ids padded with -100
are never decoded (transformers#22634). Every evaluation writes OUTPUT_DIR/predictions/eval_step{N}.jsonl.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import time

import torch
import transformers

from collators.seq2seq import IGNORE_INDEX, Seq2SeqCollator
from tasks import io
from tasks.seq2seq import SOURCE_TEXT, TARGET_TEXT, Seq2SeqTask
from tasks.tokenizer import BART_LIKE, T5_LIKE

from .base import SuiteTrainer
from .distributed import model_is_sharded
from .errors import UserError
from .family import Family, pad_multiple
from .generation import STOP_EOS, STOP_LENGTH, generate_in_order, generation_batch_size, generation_settings
from .losses import Seq2SeqLoss
from .modeling import apply_peft, check_position_table, load_model
from .config.model_type import PAD_STARTS

log = logging.getLogger("trainsuite")



def decoder_inputs(model, labels: torch.Tensor) -> torch.Tensor:
    """The model's own shift of labels to decoder inputs (start token, -100 -> pad)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return base.prepare_decoder_input_ids_from_labels(labels=labels)


def decode_labels(tokenizer, labels) -> list[str]:
    """Reference strings from label ids; -100 padding becomes pad first (transformers#22634)."""
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    rows = labels.tolist() if hasattr(labels, "tolist") else labels
    rows = [[pad if t == IGNORE_INDEX else int(t) for t in row] for row in rows]
    return [t.strip() for t in tokenizer.batch_decode(rows, skip_special_tokens=True)]


class Seq2SeqSuiteTrainer(SuiteTrainer, transformers.Seq2SeqTrainer):
    """Generation-based evaluation; the loss comes in as `compute_loss_func` (Seq2SeqLoss)."""

    def __init__(self, *args, generation=None, metrics_fn=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.generation = generation  # suites.config.GenerationConfig
        self.metrics_fn = metrics_fn  # (hypotheses, references, gen_lengths) -> dict
        self.weights_step = None  # the step of a best checkpoint loaded at the end of training

    def train(self, *args, **kwargs):
        self.weights_step = None
        out = super().train(*args, **kwargs)
        best = self.state.best_model_checkpoint
        if self.args.load_best_model_at_end and best and os.path.isdir(best):
            # the weights are now those of the best checkpoint: an evaluation after training
            # writes its predictions under that step, not over the last step's file
            step = os.path.basename(os.path.normpath(best)).rpartition("-")[2]
            self.weights_step = int(step) if step.isdigit() else None
        return out

    # -- training ------------------------------------------------------------
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if "labels" in inputs and "decoder_input_ids" not in inputs:
            inputs = {**inputs, "decoder_input_ids": decoder_inputs(self.accelerator.unwrap_model(model),
                                                                    inputs["labels"])}
        return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)

    # -- generation ----------------------------------------------------------
    def generation_config(self, model, **overrides) -> transformers.GenerationConfig:
        g = self.generation
        gc = copy.deepcopy(model.generation_config)
        settings = generation_settings(g)
        if g is not None and g.forced_bos_token:
            tid = self.processing_class.convert_tokens_to_ids(g.forced_bos_token)
            if tid is None or tid == self.processing_class.unk_token_id:
                raise UserError(f"config: generation.forced_bos_token {g.forced_bos_token!r} "
                                "is not a token of the tokenizer")
            settings["forced_bos_token_id"] = tid
        settings.update({k: v for k, v in overrides.items() if v is not None})
        if overrides.get("max_length") is not None and overrides.get("max_new_tokens") is None:
            settings["max_new_tokens"] = None  # an explicit max_length asked for by the caller
        gc.update(**settings)
        if gc.max_new_tokens is not None:
            gc.max_length = None  # max_new_tokens decides
        return gc

    def generate_texts(self, dataset, with_loss: bool = False, **gen_kwargs) -> dict:
        """Hypotheses for every row of `dataset`, in row order, plus generated lengths and, with
        `with_loss`, the teacher-forced loss over all label tokens (suites/generation.py batches)."""
        model = self.accelerator.unwrap_model(self.model)
        was_training = model.training
        model.eval()
        try:
            gc = self.generation_config(model, **gen_kwargs)
            columns = [c for c in ("input_ids", "attention_mask", "labels") if c in dataset.column_names]
            data = {c: dataset[c][:] for c in columns}  # whole columns (a lazy column reads row by row)
            with_loss = with_loss and "labels" in data
            synced = model_is_sharded(self.args)

            def run_batch(idx, keep):
                batch = self.data_collator([{c: data[c][i] for c in columns} for i in idx])
                batch = {k: v.to(self.args.device) for k, v in batch.items()}
                if keep < len(idx) and "labels" in batch:  # filler rows count in no loss
                    batch["labels"] = batch["labels"].clone()
                    batch["labels"][keep:] = IGNORE_INDEX
                texts, lengths, stops, loss, count = self._generate_batch(model, batch, gc, with_loss, synced)
                return list(zip(texts, lengths, stops)), (loss, count)

            size = generation_batch_size(self.generation, self.args.per_device_eval_batch_size, self.args.device)
            outs, stats = generate_in_order([len(x) for x in data["input_ids"]], run_batch, size, synced,
                                            quiet=self.args.disable_tqdm or not self.is_world_process_zero())
        finally:
            model.train(was_training)
        out = {"hypotheses": [o[0] for o in outs], "gen_lengths": [o[1] for o in outs], "stops": [o[2] for o in outs]}
        if with_loss:
            loss_sum, tokens = stats or (0.0, 0)
            out["loss"] = loss_sum / max(tokens, 1)
        return out

    @torch.no_grad()
    def _generate_batch(self, model, batch, gc, with_loss: bool, synced: bool = False):
        autocast = self.accelerator.autocast() if self.args.bf16 or self.args.fp16 else contextlib.nullcontext()
        loss, count = 0.0, 0
        with autocast:
            if with_loss:
                labels = batch["labels"]
                out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                            decoder_input_ids=decoder_inputs(model, labels))
                count = int((labels != IGNORE_INDEX).sum())
                loss_fn = self.compute_loss_func or Seq2SeqLoss()
                loss = float(loss_fn(out, labels, num_items_in_batch=count)) * count if count else 0.0
                del out
            seq = model.generate(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                 generation_config=gc, synced_gpus=synced)
        if model.config.is_encoder_decoder:
            seq = seq[:, 1:]  # the decoder start token
        eos, pad = gc.eos_token_id, gc.pad_token_id
        eos = eos[0] if isinstance(eos, (list, tuple)) else eos
        is_eos = seq == eos if eos is not None else torch.zeros_like(seq, dtype=torch.bool)
        real = (seq != pad).sum(1) if pad is not None else torch.full((seq.size(0),), seq.size(1))
        lengths = torch.where(is_eos.any(1), is_eos.int().argmax(1) + 1, real).tolist()
        stops = [STOP_EOS if e else STOP_LENGTH for e in is_eos.any(1).tolist()]
        texts = [t.strip() for t in self.processing_class.batch_decode(seq.tolist(), skip_special_tokens=True)]
        return texts, lengths, stops, loss, count

    # -- evaluation ----------------------------------------------------------
    def _score(self, dataset, prefix: str, with_loss: bool, gen_kwargs: dict):
        """(metrics with `prefix_`, the generate_texts output, references or None) for `dataset`."""
        start = time.perf_counter()
        out = self.generate_texts(dataset, with_loss=with_loss, **gen_kwargs)
        gen_time = time.perf_counter() - start
        hyps, refs = out["hypotheses"], None
        if TARGET_TEXT in dataset.column_names and "labels" in dataset.column_names:
            refs = dataset[TARGET_TEXT][:]
        elif "labels" in dataset.column_names:
            refs = decode_labels(self.processing_class, dataset["labels"][:])
        metrics = self.metrics_fn(hyps, refs, out["gen_lengths"]) if self.metrics_fn and refs is not None else {}
        if "loss" in out:
            metrics["loss"] = out["loss"]
        runtime = time.perf_counter() - start
        metrics.update(runtime=round(runtime, 4), samples_per_second=round(len(hyps) / max(runtime, 1e-9), 3),
                       generation_runtime=round(gen_time, 4))
        return {f"{prefix}_{k}": v for k, v in metrics.items()}, out, refs

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval", **gen_kwargs):
        dataset = eval_dataset if eval_dataset is not None else self.eval_dataset
        if isinstance(dataset, dict):
            raise UserError("seq2seq evaluates one eval dataset, not a dict of them")
        metrics, out, refs = self._score(dataset, metric_key_prefix, True, gen_kwargs)
        hyps = out["hypotheses"]
        if self.state.epoch is not None:
            metrics["epoch"] = self.state.epoch
        sources = dataset[SOURCE_TEXT][:] if SOURCE_TEXT in dataset.column_names else [""] * len(hyps)
        step = self.state.global_step if self.weights_step is None else self.weights_step
        self.write_predictions(f"{metric_key_prefix}_step{step}.jsonl", sources,
                               refs or [""] * len(hyps), hyps, out["gen_lengths"], out["stops"])
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics

    def predict(self, test_dataset, ignore_keys=None, metric_key_prefix: str = "test", **gen_kwargs):
        """Generated strings (in row order) as `predictions`; metrics when the rows have targets.
        `self.last_generation` keeps the generated token counts and stop reasons of those rows."""
        from transformers.trainer_utils import PredictionOutput

        metrics, out, _ = self._score(test_dataset, metric_key_prefix, False, gen_kwargs)
        self.last_generation = out
        return PredictionOutput(predictions=out["hypotheses"], label_ids=None, metrics=metrics)

    def write_predictions(self, name: str, sources, references, hypotheses, gen_lengths, stops) -> str | None:
        """OUTPUT_DIR/predictions/<name>: one {source, reference, hypothesis, generated_tokens, stop} line per
        row, atomically."""
        if not self.is_world_process_zero():
            return None
        return io.write_jsonl(os.path.join(self.args.output_dir, "predictions", name), (
            {"source": s, "reference": r, "hypothesis": h, "generated_tokens": n, "stop": stop}
            for s, r, h, n, stop in zip(sources, references, hypotheses, gen_lengths, stops)))


class Seq2SeqFamily(Family):
    task_cls = Seq2SeqTask
    trainer_cls = Seq2SeqSuiteTrainer
    args_cls = transformers.Seq2SeqTrainingArguments

    @property
    def model_type(self) -> str | None:
        fc = self.cfg.model.from_config
        return fc.get("model_type") if fc else None

    @property
    def special_tokens(self):
        return T5_LIKE if self.model_type in PAD_STARTS or self.model_type is None else BART_LIKE

    @property
    def defaults(self) -> dict:
        # From scratch a transformer needs a high peak rate after a warmup; a pretrained checkpoint
        # is fine-tuned gently. Label smoothing (loss.label_smoothing) defaults to 0.1 from scratch.
        scratch = self.cfg.model.from_config is not None
        return {"learning_rate": 5e-4 if scratch else 5e-5, "warmup_steps": 0.1 if scratch else 0.0,
                "weight_decay": 0.01, "lr_scheduler_type": "linear",
                "train_sampling_strategy": "group_by_length"}

    def build_model(self, tokenizer, task):
        from transformers import AutoConfig, AutoModelForSeq2SeqLM

        updates = {}
        fc = self.cfg.model.from_config
        if fc is not None:  # token ids of the locally trained tokenizer, not the architecture's defaults
            pad = tokenizer.pad_token_id
            start = pad if self.model_type in PAD_STARTS else tokenizer.eos_token_id
            wanted = {"decoder_start_token_id": start, "forced_eos_token_id": tokenizer.eos_token_id}
            defaults = AutoConfig.for_model(self.model_type)
            updates = {k: v for k, v in wanted.items() if k not in fc and v is not None
                       and (k == "decoder_start_token_id" or hasattr(defaults, k))}
            if self.model_type == "marian" and "decoder_vocab_size" not in fc:
                updates["decoder_vocab_size"] = len(tokenizer)
        model = load_model(self.cfg, AutoModelForSeq2SeqLM, tokenizer, updates)
        if not model.config.is_encoder_decoder:
            raise UserError(f"config: task seq2seq needs an encoder-decoder model (T5, BART, Marian ...), "
                            f"got {model.config.model_type}")
        g = self.cfg.generation
        check_position_table(model.config, {"data.max_source_length": self.cfg.data.max_source_length,
                                            "data.max_target_length": self.cfg.data.max_target_length,
                                            "generation.max_new_tokens": g.max_new_tokens if g else None})
        return apply_peft(self.cfg, model, "SEQ_2_SEQ_LM")

    def collator(self, tokenizer, task):
        return Seq2SeqCollator(tokenizer, pad_to_multiple_of=pad_multiple())

    def trainer_kwargs(self, tokenizer, task) -> dict:
        smoothing = self.cfg.loss.label_smoothing or 0.0  # its default is resolved in suites/config/validate.py
        return {"compute_loss_func": Seq2SeqLoss(smoothing),
                "generation": self.cfg.generation, "metrics_fn": task.generation_metrics}

    def predict_rows(self, trainer, task, dataset, tokenizer) -> list[dict]:
        out = trainer.predict(dataset)
        self.predict_metrics = out.metrics  # test_bleu, ... when the input rows carry targets
        gen = trainer.last_generation
        return [{"prediction": h, "generated_tokens": n, "stop": stop}
                for h, n, stop in zip(out.predictions, gen["gen_lengths"], gen["stops"])]
