"""Checkpoints that are always complete, and finding the newest one.

`save_checkpoint_atomically`: the trainer writes `.partial-checkpoint-N/checkpoint-N`, then renames it
to `checkpoint-N`; a kill during a save leaves only a `.partial-*` folder, which resume reports and
skips. Its last file, a manifest of sizes and hashes (checkpoint_manifest.py), finds a file damaged
after the save.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil

from . import checkpoint_manifest

log = logging.getLogger("trainsuite")

PARTIAL_PREFIX = ".partial-"
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


def save_checkpoint_atomically(trainer, save, model, trial) -> None:
    """Run the trainer's own checkpoint writer `save(model, trial)` into a partial folder, then
    rename it into place: a checkpoint-N folder is always complete."""
    run_dir = trainer._get_output_dir(trial=trial)
    name = f"checkpoint-{trainer.state.global_step}"
    final = os.path.join(run_dir, name)
    if getattr(trainer, "_suite_saved_step", None) == trainer.state.global_step and os.path.isdir(final):
        return  # this step is saved already (a step save followed by an epoch-end save)
    staging = os.path.join(run_dir, PARTIAL_PREFIX + name)
    if trainer.args.should_save and os.path.isdir(staging):
        shutil.rmtree(staging)
    trainer.accelerator.wait_for_everyone()
    trainer._get_output_dir = lambda trial=None: staging  # the writer puts staging/checkpoint-N
    try:
        save(model, trial)
    finally:
        del trainer._get_output_dir  # back to the class method
    state = trainer.state
    if state.best_global_step:  # the writer looked for the best checkpoint under the partial folder
        best = os.path.join(run_dir, f"checkpoint-{state.best_global_step}")
        if state.best_global_step == state.global_step or os.path.isdir(best):
            state.best_model_checkpoint = best
    trainer.accelerator.wait_for_everyone()
    if trainer.args.should_save:
        from .run_totals import record

        record(trainer, os.path.join(staging, name))  # the run so far, for the results of a resumed run
        state.save_to_json(os.path.join(staging, name, "trainer_state.json"))
        checkpoint_manifest.write(os.path.join(staging, name))  # sizes and hashes, checked at resume
        if os.path.isdir(final):
            shutil.rmtree(final)
        os.replace(os.path.join(staging, name), final)
        os.rmdir(staging)
        from transformers.trainer_utils import rotate_checkpoints

        rotate_checkpoints(output_dir=run_dir, save_total_limit=trainer.args.save_total_limit,
                           best_model_checkpoint=state.best_model_checkpoint, use_mtime=True)
    trainer.accelerator.wait_for_everyone()
    trainer._suite_saved_step = state.global_step


def checkpoint_is_complete(path: str) -> bool:
    """trainer_state.json is the last file a checkpoint gets; a readable one marks it complete."""
    try:
        with open(os.path.join(path, "trainer_state.json")) as fh:
            return isinstance(json.load(fh), dict)
    except (OSError, ValueError):
        return False


def complete_checkpoints(output_dir: str, quiet: bool = False):
    """The complete checkpoint-N folders of output_dir, newest first; incomplete ones are reported
    and skipped."""
    if not os.path.isdir(output_dir):
        return
    names = os.listdir(output_dir)
    for n in sorted(names):
        if n.startswith(PARTIAL_PREFIX) and not quiet:
            log.warning("skipping %s: an interrupted checkpoint save (incomplete)", os.path.join(output_dir, n))
    steps = sorted(((int(m.group(1)), n) for n in names if (m := _CHECKPOINT.match(n))
                    and os.path.isdir(os.path.join(output_dir, n))), reverse=True)
    for _, n in steps:
        path = os.path.join(output_dir, n)
        if checkpoint_is_complete(path):
            yield path
        elif not quiet:
            log.warning("skipping %s: incomplete checkpoint (no readable trainer_state.json)", path)


def latest_checkpoint(output_dir: str, quiet: bool = False) -> str | None:
    """The newest complete checkpoint-N in output_dir (not checked against its manifest)."""
    return next(complete_checkpoints(output_dir, quiet), None)


def latest_intact_checkpoint(output_dir: str) -> tuple[str | None, str | None]:
    """(the newest complete checkpoint whose files match its manifest, the first damage seen on the
    way). Each damaged one is skipped with a warning naming the file."""
    damage = None
    for path in complete_checkpoints(output_dir):
        found = checkpoint_manifest.problem(path)
        if found is None:
            return path, damage
        log.warning("skipping %s: damaged: %s", path, found)
        damage = damage or found
    return None, damage
