"""The evaluation after training, and the final model save, without redoing work the last step did.

When training ends on an evaluation (eval_strategy epoch, or steps landing on the last step) and the
weights in memory are still those weights (no best checkpoint swapped in, or the best one is the
last one), a second evaluation would score the same model on the same rows: the metrics logged at
that step are the final metrics. Likewise the last checkpoint already holds the model files that
the final save would write again; they are linked into output_dir instead of serialized twice. The
checkpoint itself stays (with its optimizer state), so `--resume` and extending a run still work.
"""

from __future__ import annotations

import logging
import os
import shutil

from .checkpoint_manifest import MANIFEST_FILE

log = logging.getLogger("trainsuite")

# what a checkpoint holds besides the model files that save_model writes
TRAINING_STATE = ("optimizer.pt", "scheduler.pt", "scaler.pt", "trainer_state.json")


def _weights_are_last_step(trainer) -> bool:
    """Whether the model in memory holds the weights of the last training step."""
    state, args = trainer.state, trainer.args
    best = state.best_model_checkpoint
    if args.load_best_model_at_end and best:
        return os.path.basename(os.path.normpath(best)) == f"checkpoint-{state.global_step}"
    return True


def last_step_eval(trainer) -> dict | None:
    """The metrics of the evaluation logged at the last step, when they score the weights in memory
    (same keys as trainer.evaluate() returns); None when a final evaluation is needed."""
    state = trainer.state
    if not state.log_history or not _weights_are_last_step(trainer):
        return None
    for row in reversed(state.log_history):
        if any(k.startswith("eval_") for k in row):
            if row.get("step") != state.global_step:
                return None
            return {k: v for k, v in row.items() if k != "step"}
    return None


def final_metrics(trainer) -> dict:
    metrics = last_step_eval(trainer)
    if metrics is not None:
        log.info("final evaluation: the evaluation at step %d scored these weights; reusing its metrics",
                 trainer.state.global_step)
        return metrics
    return trainer.evaluate()


def _last_checkpoint(trainer) -> str | None:
    path = os.path.join(trainer.args.output_dir, f"checkpoint-{trainer.state.global_step}")
    return path if os.path.isdir(path) else None


def save_final_model(trainer) -> None:
    """trainer.save_model(), or, when the last checkpoint holds these very weights (one process, no
    sharded engine), its model files linked (else copied) into output_dir."""
    ckpt = _last_checkpoint(trainer)
    args = trainer.args
    sharded = getattr(trainer, "is_deepspeed_enabled", False) or getattr(trainer, "is_fsdp_enabled", False)
    if ckpt is None or sharded or args.world_size != 1 or not _weights_are_last_step(trainer):
        trainer.save_model()
        return
    names = [n for n in os.listdir(ckpt) if os.path.isfile(os.path.join(ckpt, n))
             and n not in TRAINING_STATE and n != MANIFEST_FILE and not n.startswith("rng_state")]
    if not any(n.endswith((".safetensors", ".bin")) and n != "training_args.bin" for n in names):
        trainer.save_model()  # a checkpoint without weights (a custom save): save them properly
        return
    os.makedirs(args.output_dir, exist_ok=True)
    for name in names:
        src, dst = os.path.join(ckpt, name), os.path.join(args.output_dir, name)
        if os.path.lexists(dst):
            os.remove(dst)
        try:
            os.link(src, dst)  # the same bytes: free, and safe when the checkpoint is rotated away
        except OSError:
            shutil.copy2(src, dst)
    log.info("final model: linked from %s (the same weights)", os.path.basename(ckpt))
