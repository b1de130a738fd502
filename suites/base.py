"""SuiteTrainer: what every task family shares, on top of transformers.Trainer.

It owns: TrainingArguments from the run config (precision, logging, checkpoints), throughput and
memory in every log line, and results.json. A family subclass overrides only its loss, its
prediction step and its metrics.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import os
import sys
import time

import torch
from transformers import Trainer, TrainingArguments

from .callbacks import find_callback
from .callbacks.early_stopping import EarlyStopping, early_stopping_callbacks
from .callbacks.nonfinite import NonFiniteGuard
from .callbacks.throughput import PauseClock, count_samples, count_tokens, peak_memory
from .checkpoints import save_checkpoint_atomically
from .config.redact import PLACEHOLDER, is_secret_key, redact
from .errors import UserError
from .fsdp_cpu import fsdp_on_cpu_processes
from .fsdp_wrap import fix_fsdp_wrapping
from . import phase_timings

log = logging.getLogger("trainsuite")


def pick_precision(train: dict) -> dict:
    """bf16 where the hardware supports it, fp32 otherwise; an explicit choice wins."""
    if "bf16" in train or "fp16" in train:
        return {}
    if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return {"bf16": True}
    return {}


def training_arguments(cfg, has_eval: bool, family_defaults: dict | None = None,
                       args_cls=TrainingArguments) -> TrainingArguments:
    """Suite defaults < family defaults < the user's `train:` block."""
    defaults = {
        "per_device_train_batch_size": 16,
        "per_device_eval_batch_size": 64,
        "num_train_epochs": 3,
        "logging_steps": 10,
        "save_total_limit": 2,
        "report_to": "none",
        "eval_strategy": "epoch" if has_eval else "no",
        "save_strategy": "epoch",
        # bars only on a terminal, and not when the user asked for warnings and errors only
        "disable_tqdm": not sys.stderr.isatty() or cfg.train.get("log_level") in ("warning", "error", "critical"),
        "dataloader_num_workers": 0,
        "dataloader_pin_memory": False,
    }
    if torch.cuda.is_available():
        defaults.update(dataloader_num_workers=2, dataloader_pin_memory=True)
    defaults.update(family_defaults or {})
    defaults.update(pick_precision(cfg.train))
    merged = {**defaults, **cfg.train}
    if not has_eval:
        merged["eval_strategy"] = "no"
        merged.pop("load_best_model_at_end", None)
        merged.pop("eval_on_start", None)
    if merged.get("load_best_model_at_end"):
        merged["save_strategy"] = merged["eval_strategy"]
        if merged["eval_strategy"] == "steps":
            merged.setdefault("save_steps", merged.get("eval_steps") or merged.get("logging_steps"))
    try:
        return args_cls(output_dir=cfg.output_dir, seed=cfg.seed, **merged)
    except (ValueError, TypeError) as exc:
        raise UserError(f"config: train: {str(exc).splitlines()[0]}") from None


class SuiteTrainer(Trainer):
    """transformers.Trainer plus throughput/memory logging and results.json."""

    def __init__(self, *args, suite_cfg=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.suite_cfg = suite_cfg
        # non-finite steps and early stopping (suites/callbacks/); the run adds its signal handling
        guard = NonFiniteGuard(getattr(suite_cfg, "nonfinite", "stop") if suite_cfg else "stop")
        for cb in [guard] + early_stopping_callbacks(suite_cfg):
            self.add_callback(cb)
        self._last_log = (time.perf_counter(), 0, 0)  # time, tokens seen, samples seen
        self._samples_seen = 0  # documents in this process's micro-batches (packed rows hold several)
        self._tokens_seen = 0  # their real (non-pad) tokens
        self._pause = PauseClock()  # evaluation and checkpoint time, left out of tokens/s
        self.add_callback(self._pause)

    def create_accelerator_and_postprocess(self):
        fix_fsdp_wrapping(self.args, self.model)  # BERT-like models failed FSDP2's prepare
        with fsdp_on_cpu_processes(self.args):  # else accelerate runs DDP on CPU processes, unsharded
            super().create_accelerator_and_postprocess()

    # -- non-finite guard (suites/callbacks/nonfinite.py) ----------------------
    @property
    def _guard(self):
        if not hasattr(self, "_guard_cb"):
            self._guard_cb = find_callback(self, NonFiniteGuard)
        return self._guard_cb

    def samples_in(self, inputs) -> int:
        """The samples of a micro-batch for samples_per_s (a family whose rows are not its samples says so)."""
        return count_samples(inputs)

    def training_step(self, model, inputs, num_items_in_batch=None):
        self._samples_seen += self.samples_in(inputs)
        self._tokens_seen += count_tokens(inputs, getattr(self.model.config, "is_encoder_decoder", False))
        loss = super().training_step(model, inputs, num_items_in_batch)
        if self._guard is not None:
            self._guard.observe_loss(loss)
        return loss

    def _get_grad_norm(self, model, grad_norm=None):
        # transformers 5 computes the total gradient norm before every optimizer step; the guard
        # reuses it instead of computing it again
        norm = super()._get_grad_norm(model, grad_norm)
        if self._guard is not None:
            self._guard.observe_grad_norm(norm)
        return norm

    def _save(self, output_dir=None, state_dict=None):
        super()._save(output_dir, state_dict)
        from .file_modes import share_like_other_files

        _redact_saved_args(self.args, output_dir or self.args.output_dir)
        share_like_other_files(output_dir or self.args.output_dir)  # weights 0644, not safetensors' 0600

    def _determine_best_metric(self, metrics, trial):
        from .best_checkpoint import wins_tie

        if wins_tie(self.args, self.state, metrics):  # a tie of the metric: the lower eval_loss is best
            self.state.best_global_step = self.state.global_step
            return True
        return super()._determine_best_metric(metrics, trial)

    def _save_checkpoint(self, model, trial):
        start = time.perf_counter()
        save_checkpoint_atomically(self, super()._save_checkpoint, model, trial)
        phase_timings.current.event("checkpoint_saves", time.perf_counter() - start)  # start_run() replaces it

    # -- resume --------------------------------------------------------------
    def set_initial_training_values(self, args, dataloader):
        values = super().set_initial_training_values(args, dataloader)
        self.schedule_samples = values[3]  # num_train_samples: what the whole schedule trains on
        return values

    def _run_epoch(self, *args, **kwargs):
        # transformers looks for the end of training only after an optimizer step: resumed from the
        # last checkpoint of a run that ended inside an epoch, it trained past the end (one step past
        # max_steps; up to the next evaluation after early stopping)
        if self._resumed_at_the_end():
            self.control.should_training_stop = True
            return
        super()._run_epoch(*args, **kwargs)

    def _resumed_at_the_end(self) -> bool:
        state = self.state
        if state.global_step >= state.max_steps:
            log.info("resume: the checkpoint is at step %d of %d, the end of the run: nothing left to train",
                     state.global_step, state.max_steps)
            return True
        stopper = find_callback(self, EarlyStopping)
        untrained_resume = state.global_step > 0 and state.global_step == self._initial_global_step
        if untrained_resume and stopper is not None and stopper.ended_the_run(self.args, state):
            log.info("resume: early stopping ended the run at step %d, the checkpoint's: nothing left to train",
                     state.global_step)
            return True
        return False

    # -- data order (also in distributed runs) --------------------------------
    def _get_train_sampler(self, train_dataset=None):
        sampler = super()._get_train_sampler(train_dataset)
        from transformers.trainer_pt_utils import LengthGroupedSampler

        if isinstance(sampler, LengthGroupedSampler):
            # group_by_length sorts mega-batches of 50 batches; sized by the GLOBAL batch, N processes
            # x batch b see the same order as 1 process x batch N*b
            return EpochSeededLengthGroupedSampler(sampler.lengths, sampler.batch_size * self.args.world_size,
                                                   self.args.data_seed if self.args.data_seed is not None
                                                   else self.args.seed)
        return sampler

    def _get_eval_sampler(self, eval_dataset):
        # rows in order: transformers length-groups eval rows under group_by_length, which shuffles
        # predict() output against the input rows; the processes get consecutive batches in turn
        # and gather_for_metrics puts them back in order, dropping sampler padding
        if eval_dataset is None or not hasattr(eval_dataset, "__len__"):
            return None
        return torch.utils.data.SequentialSampler(eval_dataset)

    def evaluation_loop(self, dataloader, description, prediction_loss_only=None, ignore_keys=None,
                        metric_key_prefix="eval"):
        out = super().evaluation_loop(dataloader, description, prediction_loss_only, ignore_keys, metric_key_prefix)
        key = f"{metric_key_prefix}_loss"
        if self.compute_loss_func is not None and key in out.metrics and out.label_ids is not None \
                and out.predictions is not None:
            # Trainer averages per-batch losses, and in a distributed run the last batch of a process
            # holds sampler padding (duplicated rows, transformers#21285): score every row once instead
            logits = out.predictions[0] if isinstance(out.predictions, tuple) else out.predictions
            with torch.no_grad():
                loss = self.compute_loss_func({"logits": torch.as_tensor(logits)}, torch.as_tensor(out.label_ids))
            out.metrics[key] = float(loss)
        return out

    # -- logging -------------------------------------------------------------
    def log(self, logs: dict, start_time: float | None = None) -> None:
        if "train_runtime" in logs and self.state.global_step == getattr(self, "_initial_global_step", -1):
            # the summary of a resumed session that trained nothing (loss 0 of 0 steps): no row;
            # the epoch that Trainer.log adds to these metrics still goes to results.json
            logs["epoch"] = self.state.epoch
            return
        if "loss" in logs:  # a training log line
            logs.update(self._throughput())
        super().log(logs, start_time) if start_time is not None else super().log(logs)

    def _throughput(self) -> dict:
        now = time.perf_counter()
        tokens = int(self._tokens_seen) * self.args.world_size  # one sync per log line; ranks alike
        seen = int(self._samples_seen)  # one device sync per log line, not per step
        t0, tok0, seen0 = self._last_log
        self._last_log = (now, tokens, seen)
        dt = max(now - t0 - self._pause.take(), 1e-9)
        samples = (seen - seen0) * self.args.world_size  # processes see alike batches
        out = {"tokens_per_s": round((tokens - tok0) / dt, 1), "samples_per_s": round(samples / dt, 2)}
        out.update(peak_memory())
        return out

    # -- results -------------------------------------------------------------
    def write_results(self, metrics: dict, extra: dict | None = None, merge: bool = False,
                      replace_prefix: str | None = None, filename: str = "results.json") -> dict:
        """One flat JSON object in OUTPUT_DIR/results.json (rank 0 only). `merge` keeps the keys
        of an earlier command (predict after train) that this one does not produce, except those
        starting with `replace_prefix` (an earlier predict's scores on another input file).
        `trainsuite eval` writes its own file (eval_results.json) beside the training results.
        Returns this command's own results (the training metrics merged into the file are not its own)."""
        cfg = self.suite_cfg
        path = os.path.join(self.args.output_dir, filename)
        out = {}
        if merge and os.path.isfile(path):
            with open(path) as fh:
                out = json.load(fh)
            if replace_prefix:
                out = {k: v for k, v in out.items() if not k.startswith(replace_prefix)}
        model = (cfg.model.name_or_path or cfg.model.from_config.get("model_type")) if cfg else None
        own = {"task": cfg.task if cfg else None, "model": model, "world_size": self.args.world_size,
               **(extra or {}), **{k: _plain(v) for k, v in metrics.items()}}
        if out.get("model") not in (None, model):  # predict with the trained run: the file keeps what was trained
            out["evaluated_model"] = model
        out.update({**own, "model": out.get("model") or model})
        out = redact(out, numbers=False)  # model: a URL with a password in it
        if self.is_world_process_zero():
            os.makedirs(self.args.output_dir, exist_ok=True)
            tmp = path + ".tmp"
            with open(tmp, "w") as fh:
                json.dump(out, fh, indent=2, sort_keys=True)
            os.replace(tmp, path)
        return redact(own, numbers=False)


def _redact_saved_args(args, folder: str) -> None:
    """transformers pickles the whole TrainingArguments into training_args.bin, hub_token included:
    write it again with the secrets replaced (the trainer goes on with the real ones)."""
    path = os.path.join(folder, "training_args.bin")
    secret = [f.name for f in dataclasses.fields(args)
              if is_secret_key(f.name) and redact(getattr(args, f.name, None), f.name) == PLACEHOLDER]
    if not secret or not os.path.isfile(path):
        return
    shown = copy.copy(args)
    for name in secret:
        object.__setattr__(shown, name, PLACEHOLDER)
    torch.save(shown, path + ".tmp")
    os.replace(path + ".tmp", path)


class EpochSeededLengthGroupedSampler(torch.utils.data.Sampler):
    """Length-grouped order that is a function of (seed, epoch) alone. transformers' sampler draws
    from the global RNG, which a run resumed inside epoch 2+ holds in another state when the epoch's
    order is drawn (checkpoints restore it as it was at the saved step): the resumed run would
    replay some batches and skip others. The trainer calls set_epoch before each epoch."""

    def __init__(self, lengths, batch_size: int, seed: int):
        self.lengths, self.batch_size, self.seed, self.epoch = list(lengths), batch_size, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self):
        return len(self.lengths)

    def __iter__(self):
        from transformers.trainer_pt_utils import get_length_grouped_indices

        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return iter(get_length_grouped_indices(self.lengths, self.batch_size, generator=generator))


def _plain(v):
    if isinstance(v, (torch.Tensor,)):
        return v.item() if v.numel() == 1 else v.tolist()
    if hasattr(v, "item") and getattr(v, "ndim", 1) == 0:
        return v.item()
    return v
