"""Preference family: DPO, IPO, robust DPO, ORPO and SimPO on trl's DPOTrainer and the shared base.

From trl: the trainer plumbing (dropout off, PEFT handling, the reference model's preparation, a fused LM
head on GPUs). Our own, where trl's differs from what we promise:
- data preparation (tasks/preference.py): the prompt rendered and tokenized once, so chosen and rejected
  see the same prompt tokens; truncation cuts the prompt from the left and never a reply (trl 1.16 keeps
  the start of prompt + reply, cutting the reply's end and its end-of-turn token);
- the loss summed over pairs and divided by the pairs of the whole accumulation window, so batch 8 ==
  batch 2 x accumulation 4 also when a window's micro-batches differ in size (trl averages each
  micro-batch and Trainer divides by the accumulation steps);
- evaluation summed over pairs, not averaged per batch, with reward accuracy, margins, chosen/rejected
  rewards and log-probs, and greedy generations on held-out prompts (suites/generation.py, as SFT);
- reference-free losses (ORPO, SimPO: trl has them in separate experimental trainers) in the same trainer;
- with LoRA the reference is the base with the adapter disabled (no second copy); preference.precompute_ref
  computes the reference log-probs once and keeps them with the prepared data (suites/pairs/reference.py).
"""

from __future__ import annotations

import copy
import logging
import os
import shutil

import torch
import trl
from transformers.trainer_utils import EvalLoopOutput

from collators.preference import REF_COLUMNS, PreferenceCollator
from tasks.preference import PreferenceTask

from .base import SuiteTrainer
from .errors import UserError
from .family import pad_multiple
from .generation import held_out_generations
from .pairs.logps import REFERENCE_ADAPTER, pair_logps, reference_logps, use_chunked_head
from .pairs.losses import REFERENCE_FREE, pair_losses
from .sft import SFTFamily
from .summed_eval import SummedEvaluation

log = logging.getLogger("trainsuite")

# the sums an evaluation adds up over pairs (then divides by the pair count)
EVAL_SUMS = ("loss", "reward_accuracy", "reward_margin", "rewards_chosen", "rewards_rejected", "logps_chosen",
             "logps_rejected")


def pair_metrics(losses, chosen_rewards, rejected_rewards, logps) -> dict:
    """Per-pair values of the metrics (summed by evaluation, averaged in training logs)."""
    return {"loss": losses.detach(), "reward_accuracy": (chosen_rewards > rejected_rewards).float(),
            "reward_margin": chosen_rewards - rejected_rewards, "rewards_chosen": chosen_rewards,
            "rewards_rejected": rejected_rewards, "logps_chosen": logps.chosen.detach(),
            "logps_rejected": logps.rejected.detach()}


class SuitePreferenceTrainer(SummedEvaluation, SuiteTrainer, trl.DPOTrainer):
    loss_is_scaled_for_ga = True  # compute_loss divides by the pairs of the whole accumulation window

    def __init__(self, *args, suite_cfg=None, train_dataset=None, eval_dataset=None, generation_rows=None,
                 continued_adapter=False, reference=True, **kwargs):
        self.suite_cfg = suite_cfg  # read by _precompute_ref_logps, which trl calls from its __init__
        p = suite_cfg.preference
        if train_dataset is None:  # eval / predict: trl insists on a train set it will not use
            import datasets

            train_dataset = eval_dataset or datasets.Dataset.from_dict(
                {"prompt_ids": [[0]], "chosen_ids": [[0]], "rejected_ids": [[1]]})
        # trl keeps no reference model when told the log-probs are precomputed; our own precompute (below)
        # replaces trl's, and the reference-free losses need none at all
        self._no_reference = p.loss in REFERENCE_FREE or not reference  # predict: generation needs none
        kwargs["args"].precompute_ref_log_probs = p.precompute_ref or self._no_reference
        super().__init__(*args, suite_cfg=suite_cfg, train_dataset=train_dataset, eval_dataset=eval_dataset,
                         **kwargs)
        self.generation_rows = generation_rows or []
        model = self.accelerator.unwrap_model(self.model)
        if REFERENCE_ADAPTER in getattr(model, "peft_config", {}):
            # trl copies a PEFT model's adapter into a second, frozen "ref" one. A continued SFT adapter needs it
            # (the reference is the SFT model); a new adapter starts at zero, so the base with the adapter
            # disabled is the same reference, and no copy is kept
            if continued_adapter:
                for name, param in model.named_parameters():
                    if f".{REFERENCE_ADAPTER}." in name:
                        param.requires_grad_(False)
            else:
                model.delete_adapter(REFERENCE_ADAPTER)

    # -- data: prepared by tasks/preference.py, not by trl ----------------------
    def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
        return dataset

    def _set_signature_columns_if_needed(self):
        if self._signature_columns is None:
            self._signature_columns = ["prompt_ids", "chosen_ids", "rejected_ids", *REF_COLUMNS]

    def _precompute_ref_logps(self, dataset, name, batch_size):
        if self._no_reference or dataset is None or REF_COLUMNS[0] in dataset.column_names:
            return dataset
        from tasks.prepared_cache import cache_root

        from .pairs.reference import with_reference_logps

        return with_reference_logps(self, dataset, name, self.args.per_device_eval_batch_size,
                                    cache_root(self.suite_cfg))

    def _save(self, output_dir=None, state_dict=None):
        super()._save(output_dir, state_dict)
        # the reference copy of a continued adapter is rebuilt from the SFT run at every start: not saved
        ref = os.path.join(output_dir or self.args.output_dir, REFERENCE_ADAPTER)
        if os.path.isfile(os.path.join(ref, "adapter_config.json")):
            shutil.rmtree(ref)

    def samples_in(self, inputs) -> int:
        return int(inputs["input_ids"].shape[0]) // 2  # pairs: a batch holds the chosen rows, then the rejected

    # -- the loss --------------------------------------------------------------
    @property
    def chunked_head(self) -> bool:
        if not hasattr(self, "_chunked"):
            self._chunked = use_chunked_head(self.model, self.args.device) and self.args.world_size == 1
        return self._chunked

    def pair_outputs(self, model, inputs):
        """(loss per pair, chosen rewards, rejected rewards, policy log-probs, per-token outputs)."""
        p = self.suite_cfg.preference
        logps, tokens = pair_logps(model, inputs, self.chunked_head)
        ref = (None, None)
        if p.loss not in REFERENCE_FREE:
            if REF_COLUMNS[0] in inputs:
                ref = (inputs[REF_COLUMNS[0]], inputs[REF_COLUMNS[1]])
            else:
                ref = reference_logps(self, inputs)
        losses, chosen_rewards, rejected_rewards = pair_losses(
            p.loss, logps, *ref, beta=p.beta, label_smoothing=p.label_smoothing, gamma=p.simpo_gamma)
        return losses, chosen_rewards, rejected_rewards, logps, tokens

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        losses, chosen_rewards, rejected_rewards, logps, tokens = self.pair_outputs(model, inputs)
        pairs = num_items_in_batch if num_items_in_batch is not None else losses.numel()
        loss = losses.sum() / torch.as_tensor(pairs, device=losses.device).clamp(min=1)
        if self.args.average_tokens_across_devices and self.accelerator.num_processes > 1 \
                and num_items_in_batch is not None:
            loss = loss * self.accelerator.num_processes  # the window's pairs counted over every process
        if model.training:
            for key, values in pair_metrics(losses, chosen_rewards, rejected_rewards, logps).items():
                if key != "loss":
                    self._metrics["train"][key].append(float(values.float().mean()))
            self._total_train_tokens += int(inputs["attention_mask"].sum())
            self._metrics["train"]["num_tokens"] = [self._total_train_tokens]
        return (loss, tokens) if return_outputs else loss

    def _get_num_items_in_batch(self, batch_samples, device):
        """The pairs of the whole accumulation window (each batch holds 2 rows a pair), on every process."""
        pairs = torch.tensor(sum(int(b["input_ids"].size(0)) // 2 for b in batch_samples), device=device)
        if self.args.average_tokens_across_devices and self.args.world_size > 1:
            pairs = self.accelerator.gather(pairs).sum()
        return pairs

    # -- evaluation: sums over pairs (suites/summed_eval.py) ---------------------
    def evaluation_loop(self, dataloader, description, prediction_loss_only=None, ignore_keys=None,
                        metric_key_prefix="eval") -> EvalLoopOutput:
        model = self.model
        was_training = model.training
        model.eval()
        try:
            sums = torch.zeros(len(EVAL_SUMS) + 1, dtype=torch.float64, device=self.args.device)
            for _, (losses, chosen_r, rejected_r, logps, _) in self.eval_forwards(
                    dataloader, lambda batch: self.pair_outputs(model, batch)):
                values = pair_metrics(losses, chosen_r, rejected_r, logps)
                sums += torch.stack([values[k].double().sum() for k in EVAL_SUMS] + [torch.tensor(
                    float(losses.numel()), dtype=torch.float64, device=sums.device)]).to(sums.device)
            sums = self.sum_over_processes(sums)
            pairs = float(sums[-1])
            metrics = {f"{metric_key_prefix}_{k}": float(v) / max(pairs, 1) for k, v in zip(EVAL_SUMS, sums[:-1])}
            k = self.suite_cfg.preference.eval_generations
            if k and self.generation_rows:
                metrics.update({f"{metric_key_prefix}_{key}": v
                                for key, v in held_out_generations(self, self.generation_rows[:k]).items()})
        finally:
            model.train(was_training)
        return EvalLoopOutput(predictions=None, label_ids=None, metrics=metrics, num_samples=int(pairs))


class PreferenceFamily(SFTFamily):
    """Model loading and predict as SFT's (suites/sft.py); its own task, collator, trainer and defaults."""
    task_cls = PreferenceTask
    trainer_cls = SuitePreferenceTrainer
    args_cls = trl.DPOConfig

    @property
    def defaults(self) -> dict:
        # explicit either way: trl's DPOConfig defaults to bf16 and gradient checkpointing, even on a CPU
        bf16 = self.bf16_default()
        p = self.cfg.preference
        return {"learning_rate": 5e-6 if self.cfg.peft else 5e-7, "per_device_train_batch_size": 4,
                "per_device_eval_batch_size": 8, "lr_scheduler_type": "cosine", "warmup_steps": 0.1,
                "gradient_checkpointing": False, "bf16": bf16, "remove_unused_columns": False,
                "beta": p.beta, "label_smoothing": p.label_smoothing, "max_length": None}

    def data_counts(self, task) -> dict:
        stats = task.stats.get("train", {})
        return {f"pairs_{k}": stats[k] for k in ("truncated", "dropped_overlong", "dropped_empty_reply") if k in stats}

    def collator(self, tokenizer, task):
        return PreferenceCollator(tokenizer.pad_token_id, pad_multiple())

    def trainer_kwargs(self, tokenizer, task) -> dict:
        return {"generation_rows": task.generation_rows.get("eval"), "ref_model": getattr(self, "_ref_model", None),
                "continued_adapter": getattr(self, "_continued_adapter", False), "reference": self.mode != "predict"}

    def build_model(self, tokenizer, task):
        """SFT's model loading; training from an SFT run with a LoRA adapter continues that adapter (with a
        peft: block; its frozen copy is the reference, so the reference is the SFT model) or trains the whole
        merged model (without one)."""
        from peft import PeftModel

        model = super().build_model(tokenizer, task)
        p = self.cfg.preference
        from .modeling import is_adapter_dir

        if isinstance(model, PeftModel) and self.mode == "train" and is_adapter_dir(self.cfg.model.name_or_path):
            if self.cfg.peft is None:
                model = model.merge_and_unload()
                log.info("model: the SFT adapter is merged into its base; the whole model trains (no peft: block)")
            else:
                for name, param in model.named_parameters():
                    param.requires_grad_("lora_" in name)
                self._continued_adapter = True
                log.info("model: training continues the SFT run's LoRA adapter (its own r and targets; the peft: "
                         "block's are not used); the reference is the SFT model, a frozen copy of that adapter")
        if p.loss in REFERENCE_FREE or self.mode == "predict":
            return model
        if self.mode == "eval":
            self._ref_model = self._recorded_reference(tokenizer, task, model)
        elif self.cfg.peft is None and not p.precompute_ref:
            # a full fine-tune needs the reference beside the policy: a frozen copy of the starting weights
            self._ref_model = self._reference_copy(tokenizer, task, model)
        return model

    def _reference_copy(self, tokenizer, task, model):
        """A frozen copy of `model`. Under DeepSpeed ZeRO-3 its weights are already partitioned (a deepcopy
        would copy empty shards): the copy is built as the model was, partitioned alike, and takes the
        model's values one gathered parameter at a time (never the whole model gathered at once)."""
        from transformers.integrations import is_deepspeed_zero3_enabled

        if not is_deepspeed_zero3_enabled():
            return copy.deepcopy(model).eval().requires_grad_(False)
        import deepspeed

        ref_cfg = copy.deepcopy(self.cfg)
        ref_cfg.peft = None
        ref = SFTFamily(ref_cfg).build_model(tokenizer, task)
        ours, theirs = dict(ref.named_parameters()), dict(model.named_parameters())
        if ours.keys() != theirs.keys():
            raise UserError("preference: under DeepSpeed ZeRO-3 a full fine-tune's reference is rebuilt from "
                            f"model.name_or_path, which does not give the trained model's layers ({self.cfg.model.name_or_path}"
                            " is a LoRA run: merge it first with `trainsuite merge`)")
        for name, param in theirs.items():
            with deepspeed.zero.GatheredParameters([param, ours[name]], modifier_rank=0):
                ours[name].data.copy_(param.data)
        return ref.eval().requires_grad_(False)

    def _recorded_reference(self, tokenizer, task, model):
        """eval/predict of a trained run: the model its training started from (tasks/preference.py's record),
        loaded beside it, unless the run is an adapter on that very model (then: the adapter disabled)."""
        import json

        from tasks.io import resolve_model
        from tasks.preference import REFERENCE_FILE

        from .modeling import is_adapter_dir

        folder = resolve_model(self.cfg.model.name_or_path) if self.cfg.model.name_or_path else None
        path = os.path.join(folder, REFERENCE_FILE) if folder and os.path.isdir(folder) else None
        if path is None or not os.path.isfile(path):
            if self.cfg.peft is None and not is_adapter_dir(folder):  # not a run of ours: the model is its own reference
                return copy.deepcopy(model).eval().requires_grad_(False)
            return None
        with open(path, encoding="utf-8") as fh:
            record = json.load(fh)
        if not record.get("name_or_path"):
            log.warning("%s: training started from model.from_config (random weights, not saved), so rewards are "
                        "measured against the evaluated model itself", folder)
            return copy.deepcopy(model).eval().requires_grad_(False)
        if is_adapter_dir(folder):
            with open(os.path.join(folder, "adapter_config.json")) as fh:
                base = json.load(fh).get("base_model_name_or_path")
            if resolve_model(record["name_or_path"]) in (base, resolve_model(base)):
                return None  # a fresh adapter on the reference: disabled, it is the reference
        ref_cfg = copy.deepcopy(self.cfg)
        ref_cfg.model.name_or_path, ref_cfg.model.gguf_file = record["name_or_path"], record.get("gguf_file")
        ref_cfg.model.revision, ref_cfg.peft = record.get("revision"), None
        log.info("reference for evaluation: %s (the model training started from)", record["name_or_path"])
        return SFTFamily(ref_cfg).build_model(tokenizer, task).eval().requires_grad_(False)
