"""SFT family: causal-LM fine-tuning on trl's SFTTrainer and the shared base.

trl gives the chunked ("fused") LM-head loss that never builds the full logits, and the trainer
plumbing. We do ourselves what it gets wrong or leaves out:
- on a CPU (no Triton) the LM head in small chunks (suites/lm_head.py): trl's torch fallback
  takes GiBs of tiles and is several times slower than plain logits;
- data preparation (tasks/instruction.py) and packing (collators/sft.py); trl's is skipped;
- NEFTune noise scaled by each document's own length, also in a packed row (transformers scales
  by the padded/packed length, transformers#34659);
- evaluation that sums the loss over tokens batch by batch (trl/Trainer average per-batch means,
  so eval_loss would depend on batching and packing), with token accuracy and perplexity, and
  generation on held-out prompts (left padding, prompt only, transformers#44593).
The training loss is trl's: summed over trained tokens and divided by the trained tokens of the
whole accumulation window (`num_items_in_batch`), so batch 8 == batch 2 x accumulation 4.
"""

from __future__ import annotations

import logging
import math
import time

import torch
import trl
from transformers.trainer_utils import EvalLoopOutput

from collators.sft import PackedCollator, PaddingCollator, document_lengths, group_documents, pack_documents
from tasks.instruction import InstructionTask
from tasks.tokenizer import CHAT_LIKE

from .base import SuiteTrainer
from .distributed import model_is_sharded
from .family import Family, pad_multiple
from .generation import (GENERATIONS_AT_START_FILE, GENERATIONS_FILE, decode_completion,  # noqa: F401 (re-exported)
                         generate, held_out_generations, stop_token_ids)
from .lm_head import plain_head, token_outputs
from .modeling import apply_peft, load_model
from .sft_speed import attention_kwargs, speed_defaults
from .summed_eval import SummedEvaluation


log = logging.getLogger("trainsuite")

def neftune_noise(embeds: torch.Tensor, lengths: torch.Tensor, alpha: float) -> torch.Tensor:
    """Uniform noise of magnitude alpha / sqrt(L * d), L the length of each token's own document
    (NEFTune, arXiv 2310.05914); zero on padding (L = 0)."""
    scale = alpha / torch.sqrt(lengths.clamp(min=1).to(torch.float32) * embeds.size(-1))
    scale = (scale * (lengths > 0)).to(embeds.dtype).unsqueeze(-1)
    return torch.empty_like(embeds).uniform_(-1, 1) * scale


class SuiteSFTTrainer(SummedEvaluation, SuiteTrainer, trl.SFTTrainer):
    def __init__(self, *args, suite_cfg=None, train_dataset=None, eval_dataset=None, generation_rows=None,
                 **kwargs):
        s = suite_cfg.sft
        if s.batch_tokens and train_dataset is not None:  # one row of at most batch_tokens per micro-batch
            targs = kwargs["args"]
            train_dataset = group_documents(train_dataset, s.batch_tokens, s.packing,
                                            pad_multiple(), seed=targs.seed)
            targs.per_device_train_batch_size = 1
        elif s.packing and train_dataset is not None:
            examples = len(train_dataset)
            train_dataset = pack_documents(train_dataset, s.max_length)
            # the schedule line counts these rows; say what they hold (results.json counts the examples)
            log.info("sft.packing: %d training examples packed into %d rows of at most %d tokens",
                     examples, len(train_dataset), s.max_length)
        if s.packing:
            eval_dataset = pack_documents(eval_dataset, s.max_length) if eval_dataset is not None else None
        if train_dataset is None:  # eval / predict: trl insists on a train set it will not use
            import datasets

            train_dataset = eval_dataset or datasets.Dataset.from_dict({"input_ids": [[0, 0]], "labels": [[-100, 0]]})
        super().__init__(*args, suite_cfg=suite_cfg, train_dataset=train_dataset, eval_dataset=eval_dataset,
                         **kwargs)
        self.generation_rows = generation_rows or []
        self._doc_lengths = None
        if s.neftune_alpha:
            self.model.get_input_embeddings().register_forward_hook(self._neftune_hook)

    def _neftune_hook(self, module, args, output):
        if not module.training or self._doc_lengths is None:
            return output
        return output + neftune_noise(output, self._doc_lengths.to(output.device), self.suite_cfg.sft.neftune_alpha)

    @property
    def _chunked_head(self) -> bool:
        """Our LM head (suites/lm_head.py) where trl's has no Triton kernel: one CPU process, trl's plain
        loss (no custom loss function, label smoothing, DFT or Liger) and a head of plain logits."""
        if not hasattr(self, "_use_chunked_head"):
            a = self.args
            self._use_chunked_head = a.device.type == "cpu" and a.world_size == 1 and a.loss_type == "nll" \
                and self.compute_loss_func is None and self.label_smoother is None and not a.use_liger_kernel \
                and plain_head(self.model)
        return self._use_chunked_head

    def token_outputs(self, model, inputs):
        """Per-token log-probabilities, trained-token mask, top-1 hits and entropy, never the whole logits."""
        if self._chunked_head:
            return token_outputs(model, inputs)
        return model(**inputs, fused_lm_head=True, use_cache=False)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        self._doc_lengths = document_lengths(inputs) if self.suite_cfg.sft.neftune_alpha else None
        if return_outputs or not self._chunked_head:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        out = token_outputs(model, inputs)
        # trl's loss: summed over trained tokens, divided by those of the whole accumulation window
        count = out.label_mask.sum() if num_items_in_batch is None else num_items_in_batch
        loss = -out.log_probs.sum() / torch.as_tensor(count).clamp(min=1)
        self._log_token_metrics(out, inputs)
        return loss

    def _log_token_metrics(self, out, inputs) -> None:
        """The entropy, token accuracy and token count that trl's compute_loss adds to its log lines."""
        mode = "train" if self.model.training else "eval"
        valid = int(out.label_mask.sum())
        self._metrics[mode]["entropy"].append(float(out.entropy.detach().sum()) / valid if valid else 0.0)
        self._metrics[mode]["mean_token_accuracy"].append(float(out.is_top1.sum()) / valid if valid else 0.0)
        if mode == "train":
            mask = inputs.get("attention_mask")
            self._total_train_tokens += int(mask.sum()) if mask is not None else int(inputs["position_ids"].size(1))
        self._metrics[mode]["num_tokens"] = [self._total_train_tokens]

    # -- evaluation: streamed token sums, never the logits (suites/summed_eval.py) --
    def evaluation_loop(self, dataloader, description, prediction_loss_only=None, ignore_keys=None,
                        metric_key_prefix="eval") -> EvalLoopOutput:
        model = self.model
        was_training = model.training
        model.eval()
        try:
            sums = torch.zeros(3, dtype=torch.float64, device=self.args.device)  # nll, tokens, correct
            docs = 0
            for inputs, out in self.eval_forwards(dataloader, lambda batch: self.token_outputs(model, batch)):
                sums += torch.stack([-out.log_probs.double().sum(), out.label_mask.sum().double(),
                                     out.is_top1.double().sum()])
                docs += int((inputs["position_ids"] == 0).sum()) if "attention_mask" not in inputs else len(
                    inputs["input_ids"])
            sums = self.sum_over_processes(sums)
            nll, n, correct = (float(x) for x in sums)
            loss = nll / max(n, 1)
            metrics = {f"{metric_key_prefix}_loss": loss, f"{metric_key_prefix}_perplexity": math.exp(min(loss, 50)),
                       f"{metric_key_prefix}_mean_token_accuracy": correct / max(n, 1),
                       f"{metric_key_prefix}_num_tokens": int(n)}
            k = self.suite_cfg.sft.eval_generations
            if k and self.generation_rows:
                metrics.update({f"{metric_key_prefix}_{key}": v for key, v in self.generation_eval(k).items()})
        finally:
            model.train(was_training)
        return EvalLoopOutput(predictions=None, label_ids=None, metrics=metrics, num_samples=docs)

    def generation_eval(self, k: int) -> dict:
        return held_out_generations(self, self.generation_rows[:k])


class SFTFamily(Family):
    task_cls = InstructionTask
    trainer_cls = SuiteSFTTrainer
    special_tokens = CHAT_LIKE
    args_cls = trl.SFTConfig

    def bf16_default(self) -> bool:
        """bf16 made explicit either way: trl's configs default to bf16=True even on a CPU; fp16 asked for wins."""
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported() and not self.cfg.train.get("fp16")

    @property
    def defaults(self) -> dict:
        bf16 = self.bf16_default()
        return {"learning_rate": 2e-4 if self.cfg.peft else 2e-5, "per_device_train_batch_size": 8,
                "per_device_eval_batch_size": 8, "lr_scheduler_type": "cosine", "warmup_steps": 0.03,
                "gradient_checkpointing": False, "bf16": bf16, "remove_unused_columns": False,
                "dataset_kwargs": {"skip_prepare_dataset": True}, "max_length": None,
                **speed_defaults(self.cfg)}

    def build_model(self, tokenizer, task):
        from transformers import AutoModelForCausalLM

        model = load_model(self.cfg, AutoModelForCausalLM, tokenizer, **attention_kwargs(self.cfg))
        if hasattr(model, "peft_config"):  # a saved adapter, loaded for eval/predict
            return model
        if len(tokenizer) > model.get_input_embeddings().num_embeddings:
            model.resize_token_embeddings(len(tokenizer))
        return apply_peft(self.cfg, model, "CAUSAL_LM")

    def collator(self, tokenizer, task):
        if self.cfg.sft.packing:
            return PackedCollator()
        return PaddingCollator(tokenizer.pad_token_id, pad_multiple())

    def trainer_kwargs(self, tokenizer, task) -> dict:
        rows = task.generation_rows.get("eval")
        if self.cfg.sft.eval_generations and "eval" in task.generation_rows and not rows:
            log.warning("sft.eval_generations=%d: the eval rows (format %s) hold no prompt and reference, "
                        "so no generations are made", self.cfg.sft.eval_generations, task.format)
        return {"generation_rows": rows}

    def predict_rows(self, trainer, task, dataset, tokenizer) -> list[dict]:
        """One {prompt, completion, [reference], generated_tokens, stop} per row; the rows that carry a
        reference (tasks/instruction.py: a `reference` field, else the final assistant turn or the
        completion) are scored like the eval generations: test_bleu, test_chrf, ... (`predict_metrics`)."""
        from tasks.metrics.generation import generation_metrics

        prompts, references = dataset["prompt"][:], dataset["reference"][:]  # whole columns at once
        start = time.perf_counter()
        outs = generate(trainer.model, tokenizer, prompts, self.cfg.generation,
                        trainer.args.per_device_eval_batch_size, synced_gpus=model_is_sharded(trainer.args),
                        quiet=trainer.args.disable_tqdm or not trainer.is_world_process_zero())
        runtime = time.perf_counter() - start
        scored = [(c, r, n) for r, (c, n, _) in zip(references, outs) if r is not None]
        self.predict_metrics = {}
        if scored:
            metrics = generation_metrics([c for c, _, _ in scored], [r for _, r, _ in scored], [n for _, _, n in scored])
            metrics.update(scored_rows=len(scored), runtime=round(runtime, 4),
                           samples_per_second=round(len(outs) / max(runtime, 1e-9), 3))
            self.predict_metrics = {f"test_{k}": v for k, v in metrics.items()}
            if len(scored) < len(outs):
                log.info("predict: %d of %d rows carry a reference and are scored", len(scored), len(outs))
        return [{"prompt": p, "completion": c, **({"reference": r} if r is not None else {}),
                 "generated_tokens": n, "stop": stop}
                for p, r, (c, n, stop) in zip(prompts, references, outs)]
