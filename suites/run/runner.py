"""The flow of one run: config -> task -> tokenizer/model -> trainer -> outputs.

Every family goes through the same three commands (train, eval, predict).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import time

import transformers

from tasks import io

from .. import distributed, final_eval, phase_timings, run_totals
from ..base import training_arguments
from ..callbacks import early_stopping, log_frequency
from ..config.redact import redact
from ..errors import MISTAKES, UserError
from ..family import family_for
from ..modeling import is_adapter_dir, load_tokenizer, parameter_counts
from ..outputs import report, tracking
from ..sweep import reporter as sweep_reporter
from . import lock, run_dir, signals
from .resume import resolve_resume

log = logging.getLogger("trainsuite")


def _inference_model(cfg) -> None:
    """eval/predict of a from-scratch config use the model trained into output_dir."""
    if cfg.model.from_config is None and not cfg.tokenizer.train_from_data:
        return
    if not os.path.isfile(os.path.join(cfg.output_dir, "config.json")) and not os.path.isfile(
            os.path.join(cfg.output_dir, "adapter_config.json")):
        raise UserError(f"no trained model in {cfg.output_dir}: run `trainsuite train` first, or set "
                        "model.name_or_path to a checkpoint")
    cfg.model.name_or_path, cfg.model.from_config = cfg.output_dir, None
    cfg.tokenizer.train_from_data = False


def _no_new_adapter(cfg) -> None:
    """eval/predict: a `peft:` block says how to train an adapter. A LoRA run's folder brings its own
    (adapter_config.json); a base or merged model would get a fresh, untrained one: the same outputs,
    only slower. So the block applies to adapter runs alone."""
    if cfg.peft is not None and not is_adapter_dir(cfg.model.name_or_path):
        log.info("%s is no adapter run (no adapter_config.json): the peft block is not applied for %s",
                 cfg.model.name_or_path, "evaluation or prediction")
        cfg.peft = None


def build(cfg, mode: str, predict_input: str | None = None):
    """(family, task, tokenizer, trainer, raw splits) for a command."""
    if mode != "train":
        _inference_model(cfg)
        _no_new_adapter(cfg)
    phase = phase_timings.current.phase
    family = family_for(cfg)
    family.mode = mode  # train, eval or predict
    transformers.set_seed(cfg.seed)
    task = family.task_cls(cfg)
    with phase("load_and_check_data"):
        splits = task.load(mode, predict_input)
    # arguments before the tokenizer and the model: they start the process group (a tokenizer
    # trained from data is trained once and shared), and under DeepSpeed ZeRO-3 they make
    # from_pretrained load the model sharded
    args = training_arguments(cfg, has_eval="eval" in splits, family_defaults=family.defaults,
                              args_cls=getattr(family, "args_cls", transformers.TrainingArguments))
    _ = args.device  # transformers sets up the device and the process group lazily
    distributed.start_deepspeed_comm(args)
    with phase("tokenizer"):
        tokenizer = load_tokenizer(cfg, texts=lambda: task.texts_for_tokenizer(splits["train"]),
                                   special=family.special_tokens, task=task, train_rows=splits.get("train"))
        task.setup(splits, tokenizer)
    with phase("model"):
        model = family.build_model(tokenizer, task)
    from tasks import prepared_cache

    with phase("encode"):
        encoded = prepared_cache.encode_splits(cfg, task, tokenizer, splits)  # a previous run's, when the same
    with phase("trainer_init"):
        trainer = family.trainer_cls(
            model=model, args=args, train_dataset=encoded.get("train"), eval_dataset=encoded.get("eval"),
            processing_class=tokenizer, data_collator=family.collator(tokenizer, task), suite_cfg=cfg,
            **family.trainer_kwargs(tokenizer, task))
    return family, task, tokenizer, trainer, encoded


def train(cfg, overwrite: bool = False, resume=None) -> dict:
    phases = phase_timings.start_run()
    # the config's way to say --resume: train.resume_from_checkpoint: true | PATH (a TrainingArguments field)
    from_config = cfg.train.pop("resume_from_checkpoint", None)
    resume = resume if resume is not None else from_config
    run_dir.guard(cfg.output_dir, overwrite, resume)  # --overwrite deletes only what a run wrote
    resume = resolve_resume(cfg.output_dir, resume)
    if resume and cfg.tokenizer.train_from_data:
        # a retrained tokenizer may number tokens differently: resume with the checkpoint's own
        cfg.tokenizer.train_from_data, cfg.tokenizer.name_or_path = False, resume
    stop = signals.GracefulStop()  # SIGTERM/SIGINT during training: checkpoint, then exit 3
    with _nothing_half_made(cfg, stop):
        task, trainer, data, counts = _prepare(cfg, resume, stop)
        start = time.perf_counter()
        try:
            with phases.phase("train_loop_with_evaluations_and_checkpoints"):
                out = trainer.train(resume_from_checkpoint=resume)
        finally:  # also after a crash: the caller's own SIGINT/SIGTERM handling comes back
            signals.restore_signal_handlers(trainer)
    runtime = time.perf_counter() - start
    try:
        return _finish(cfg, trainer, out, data, counts, runtime, phases)
    except KeyboardInterrupt:  # Ctrl-C after the signal handlers of training were restored
        raise _interrupted_after_training(cfg) from None


def _interrupted_after_training(cfg) -> KeyboardInterrupt:
    return KeyboardInterrupt(f"after training, before its results were written; what it saved in "
                             f"{cfg.output_dir} stays")


def _finish(cfg, trainer, out, data, counts, runtime, phases) -> dict:
    """The final save, the final evaluation, results.json and the report of a training run."""
    stopped_extra = signals.raise_if_stopped(trainer, cfg)  # a signal or a non-finite step
    stopped_extra.update(early_stopping.results(trainer))
    with phases.phase("final_save"):
        final_eval.save_final_model(trainer)  # the last checkpoint's files when they hold these weights
        trainer.save_state()
    metrics, run_extra = run_totals.whole_run(trainer, dict(out.metrics), runtime)
    if "eval" in data:
        with phases.phase("final_evaluation"):
            metrics.update(final_eval.final_metrics(trainer))  # the last step's evaluation when it scored these weights
    extra = {"num_train_samples": len(data["train"]), **run_extra, **counts,
             "global_batch_size": distributed.global_batch_size(trainer.args),
             **stopped_extra}
    results = trainer.write_results(metrics, extra)
    with phases.phase("report_and_figures"):
        report.after_run(cfg.output_dir, trainer.state.log_history, record_environment=True)
    phase_timings.write(cfg.output_dir, trainer.state.log_history)
    return results


def _prepare(cfg, resume, stop):
    """Data, tokenizer, model and trainer of a training run; its config and task files written."""
    family, task, tokenizer, trainer, data = build(cfg, "train")
    trainer.add_callback(stop)
    sweep_reporter.attach(trainer, cfg)  # a trial of `trainsuite sweep`: evaluations to its study
    counts = parameter_counts(trainer.model)
    log.info("model: %s parameters, %s trainable", f"{counts['params_total']:,}",
             f"{counts['params_trainable']:,}")
    counts.update(family.data_counts(task))
    log.info("%s", distributed.schedule_line(trainer.args, len(trainer.train_dataset)))
    log_frequency.attach(trainer, cfg)  # a short run logs often enough to draw its curves
    tracking.attach(cfg, trainer, counts)  # report_to: MLflow's local store, config and counts logged
    if trainer.is_world_process_zero():
        run_dir.write_marker(cfg.output_dir)  # this folder is a run's: a later --overwrite may clear it
        _save_config(cfg)
        task.save(cfg.output_dir)
    run_totals.attach(trainer, resume)  # a resumed run's results cover its earlier sessions too
    return task, trainer, data, counts


@contextlib.contextmanager
def _nothing_half_made(cfg, stop):
    """A mistake found, or Ctrl-C (SIGINT, a KeyboardInterrupt until GracefulStop takes the signal over at
    the first step), while a run prepares leaves no half-made run behind: the output_dir that this run
    created is removed. An output_dir that existed before (--resume, --overwrite) stays."""
    existed = os.path.isdir(cfg.output_dir) and not lock.made_by_lock(cfg.output_dir)
    try:
        yield
    except (*MISTAKES, KeyboardInterrupt) as exc:
        if stop.began:  # training ran: its checkpoints are the user's
            if isinstance(exc, KeyboardInterrupt):
                raise _interrupted_after_training(cfg) from None
            raise
        if not existed:
            shutil.rmtree(cfg.output_dir, ignore_errors=True)
        if isinstance(exc, KeyboardInterrupt):
            kept = "" if not existed else f" ({cfg.output_dir} existed before this run and stays)"
            raise KeyboardInterrupt(f"before training started; nothing was written{kept}") from None
        raise


def evaluate(cfg) -> dict:
    family, task, tokenizer, trainer, data = build(cfg, "eval")
    metrics = trainer.evaluate()
    metrics.pop("epoch", None)  # Trainer.log adds the untrained state's epoch (0): not the model's
    # beside the training results, not over them: results.json keeps train_loss, runtime, epoch
    results = trainer.write_results(metrics, {"num_eval_samples": len(data["eval"])},
                                    filename=report.EVAL_RESULTS)
    report.after_run(cfg.output_dir)  # the training curves from trainer_state.json, the new metrics
    return results


def predict(cfg, input_path: str, output_path: str) -> dict:
    family, task, tokenizer, trainer, data = build(cfg, "predict", predict_input=input_path)
    rows = family.predict_rows(trainer, task, data["predict"], tokenizer)
    if trainer.is_world_process_zero():
        io.write_jsonl(output_path, rows)  # never a half-written predictions file
    log.info("wrote %d predictions to %s", len(rows), output_path)
    return trainer.write_results(family.predict_metrics, {"num_predictions": len(rows),
                                                          "predictions_file": output_path},
                                 merge=True, replace_prefix="test_")


def _save_config(cfg) -> None:
    import yaml

    os.makedirs(cfg.output_dir, exist_ok=True)
    with open(os.path.join(cfg.output_dir, "run_config.yaml"), "w") as fh:
        yaml.safe_dump(redact(cfg.to_dict()), fh, sort_keys=False)  # the run keeps the real values

