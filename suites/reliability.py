"""Reliability of a training run: stop cleanly on a signal, refuse (or skip) non-finite steps,
write checkpoints atomically, and find the checkpoint to resume from.

- `GracefulStop` (callback): the first SIGTERM/SIGINT asks for a checkpoint at the end of the
  current optimizer step, then training stops and the command exits with EXIT_INTERRUPTED; a
  second signal ends the process at once (the default action of that signal).
- `NonFiniteGuard` (callback): before each optimizer step, checks the micro-batch losses and the
  gradients. `nonfinite: stop` drops the update, saves nothing more (the last checkpoint stays the
  last good one) and ends the command with EXIT_NONFINITE naming the step; `nonfinite: skip`
  drops the update and counts it (results.json: nonfinite_steps_skipped).
- `save_checkpoint_atomically`: the trainer writes `.partial-checkpoint-N/checkpoint-N`, then
  renames it to `checkpoint-N`; a kill during a save leaves only a `.partial-*` folder, which
  resume reports and skips.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shlex
import shutil
import signal

import torch
from transformers import TrainerCallback

from .errors import UserError

log = logging.getLogger("trainsuite")

EXIT_INTERRUPTED = 3  # a signal stopped training after saving a checkpoint; `--resume` continues it
EXIT_NONFINITE = 4  # a non-finite loss or gradient stopped training (nonfinite: stop)

PARTIAL_PREFIX = ".partial-"
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


class RunStopped(Exception):
    """Training ended early on purpose; the message says why and what to do next."""

    exit_code = 1


class TrainingInterrupted(RunStopped):
    exit_code = EXIT_INTERRUPTED


class NonFiniteStop(RunStopped):
    exit_code = EXIT_NONFINITE


# ---------------------------------------------------------------- signals


class GracefulStop(TrainerCallback):
    """SIGTERM/SIGINT -> checkpoint at the next step boundary, then stop."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self):
        self.received = None  # the signal number, once one arrived
        self.saved_step = None
        self._previous = {}

    @staticmethod
    def _say(text: str) -> None:
        # os.write, not print: a handler may run in the middle of another write to sys.stderr
        os.write(2, ("\n" + text + "\n").encode())

    def _handle(self, signum, frame):
        if self.received is not None:  # second signal: stop now, as if we had no handler
            self._say(f"{signal.Signals(signum).name} again: stopping at once")
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        self.received = signum
        self._say(f"{signal.Signals(signum).name} received: saving a checkpoint at the end of this step, "
                  "then stopping (send it again to stop at once)")

    def _stop_requested(self, args) -> bool:
        flag = self.received is not None
        if args.world_size > 1 and torch.distributed.is_initialized():
            # every rank must stop at the same step, or the next collective hangs
            t = torch.tensor([int(flag)], device=args.device)
            torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
            flag = bool(t.item())
        return flag

    def on_train_begin(self, args, state, control, **kwargs):
        try:
            for s in self.SIGNALS:
                self._previous[s] = signal.signal(s, self._handle)
        except ValueError:  # not the main thread: leave signals alone
            self._previous.clear()

    def on_train_end(self, args, state, control, **kwargs):
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous.clear()

    def on_step_end(self, args, state, control, **kwargs):
        if self._stop_requested(args):
            if self.received is None:
                self.received = signal.SIGTERM  # another rank got it
            control.should_save = True  # even with save_strategy: no
            control.should_evaluate = False
            control.should_training_stop = True
            self.saved_step = state.global_step
        return control

    def on_epoch_end(self, args, state, control, **kwargs):
        if self.saved_step is not None:  # the checkpoint of this step exists already
            control.should_save = control.should_evaluate = False
        return control


# ---------------------------------------------------------------- non-finite steps


class NonFiniteGuard(TrainerCallback):
    """Checks losses and gradients before each optimizer step; drops a non-finite update."""

    def __init__(self, mode: str = "stop"):
        self.mode = mode
        self.bad_loss = None  # tensor flag, set by the trainer for each micro-batch loss
        self.grad_norm = None  # the trainer's total gradient norm of this step, when it hands it over
        self.skipped = 0
        self.failed_step = None

    def observe_loss(self, loss: torch.Tensor) -> None:
        bad = ~torch.isfinite(loss.detach()).all()
        self.bad_loss = bad if self.bad_loss is None else (self.bad_loss | bad)

    def observe_grad_norm(self, norm) -> None:
        self.grad_norm = norm

    def _nonfinite(self, args, model) -> bool:
        flags = []
        if self.bad_loss is not None:
            flags.append(self.bad_loss.to(args.device))
        self.bad_loss = None
        norm, self.grad_norm = self.grad_norm, None
        # With fp16 the grad scaler owns overflowed gradients (it skips those steps itself).
        if not args.fp16 and norm is not None:
            flags.append(~torch.isfinite(torch.as_tensor(norm, device=args.device)))
        elif not args.fp16 and model is not None:
            grads = [p.grad for p in model.parameters() if p.grad is not None]
            if grads:
                norm = torch.nn.utils.get_total_norm(grads, norm_type=2.0, error_if_nonfinite=False)
                flags.append(~torch.isfinite(norm).to(args.device))
        if not flags:
            return False
        flag = torch.stack([_local(f).reshape(()) for f in flags]).any().to(torch.int32)
        if args.world_size > 1 and torch.distributed.is_initialized():
            torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
        return bool(flag.item())

    def on_train_begin(self, args, state, control, **kwargs):
        # skipped steps of an earlier part of a resumed run are in its log history
        self.skipped = sum(1 for e in state.log_history if "nonfinite_skipped_step" in e)

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        if not self._nonfinite(args, model):
            return control
        step = state.global_step + 1
        # Without gradients, torch optimizers leave every parameter (and its moments) as it is.
        model.zero_grad(set_to_none=True)
        if self.mode == "skip":
            self.skipped += 1
            state.log_history.append({"nonfinite_skipped_step": step, "step": step})
            log.warning("step %d: non-finite loss or gradients; update skipped (%d so far)", step, self.skipped)
        elif self.failed_step is None:
            self.failed_step = step
            control.should_training_stop = True
        return control

    def on_step_end(self, args, state, control, **kwargs):
        if self.failed_step is not None:  # keep the last good checkpoint the last one
            control.should_save = control.should_evaluate = False
        return control

    on_epoch_end = on_step_end


def _local(t: torch.Tensor) -> torch.Tensor:
    """A plain tensor: under FSDP2 the gradient norm is a DTensor, which collectives refuse
    (full_tensor() is itself collective, and every rank gets here each step)."""
    full = getattr(t, "full_tensor", None)
    return full() if callable(full) else t


def callbacks_for(cfg) -> list:
    return [NonFiniteGuard(getattr(cfg, "nonfinite", "stop") if cfg else "stop"), GracefulStop()]


def restore_signal_handlers(trainer) -> None:
    stop = find_callback(trainer, GracefulStop)
    if stop is not None:
        stop.on_train_end(None, None, None)


def find_callback(trainer, cls):
    return next((c for c in trainer.callback_handler.callbacks if isinstance(c, cls)), None)


def raise_if_stopped(trainer, cfg) -> dict:
    """After trainer.train(): raise RunStopped when a guard ended training; else the extra results."""
    guard = find_callback(trainer, NonFiniteGuard)
    stop = find_callback(trainer, GracefulStop)
    out_dir = trainer.args.output_dir
    if guard is not None and guard.failed_step is not None:
        last = latest_checkpoint(out_dir, quiet=True)
        keep = f"the last good checkpoint is {last}" if last else "no checkpoint was saved before it"
        raise NonFiniteStop(
            f"step {guard.failed_step}: non-finite loss or gradients (NaN/inf); training stopped, {keep}. "
            "Lower train.learning_rate, set train.max_grad_norm, check the data, or set nonfinite: skip")
    if stop is not None and stop.received is not None:
        name = signal.Signals(stop.received).name
        where = os.path.join(out_dir, f"checkpoint-{stop.saved_step}")
        from .launch import COMMAND_ENV

        # a run started by scripts/launch continues with the same launch (its processes, its
        # --deepspeed/--fsdp), not with a one-process trainsuite command
        command = os.environ.get(COMMAND_ENV)
        if not command:
            config = getattr(cfg, "source_path", None) or "CONFIG"
            # the overrides too: without them the hint could resume another output_dir or settings
            command = shlex.join(["trainsuite", "train", config, *getattr(cfg, "source_overrides", []),
                                  "--resume"])
        raise TrainingInterrupted(f"interrupted by {name} at step {stop.saved_step}: saved {where}; "
                                  f"continue with: {command}")
    return {"nonfinite_steps_skipped": guard.skipped} if guard is not None and guard.mode == "skip" else {}


# ---------------------------------------------------------------- checkpoints


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
        state.save_to_json(os.path.join(staging, name, "trainer_state.json"))
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


def latest_checkpoint(output_dir: str, quiet: bool = False) -> str | None:
    """The newest complete checkpoint-N in output_dir; incomplete ones are reported and skipped."""
    if not os.path.isdir(output_dir):
        return None
    names = os.listdir(output_dir)
    for n in sorted(names):
        if n.startswith(PARTIAL_PREFIX) and not quiet:
            log.warning("skipping %s: an interrupted checkpoint save (incomplete)", os.path.join(output_dir, n))
    steps = sorted(((int(m.group(1)), n) for n in names if (m := _CHECKPOINT.match(n))
                    and os.path.isdir(os.path.join(output_dir, n))), reverse=True)
    for _, n in steps:
        path = os.path.join(output_dir, n)
        if checkpoint_is_complete(path):
            return path
        if not quiet:
            log.warning("skipping %s: incomplete checkpoint (no readable trainer_state.json)", path)
    return None


def resolve_resume(output_dir: str, resume) -> str | None:
    """`--resume` (True: the latest complete checkpoint) or `--resume PATH` -> a checkpoint dir."""
    if not resume:
        return None
    if resume is True:
        found = latest_checkpoint(output_dir)
        if found is None:
            raise UserError(f"--resume: no complete checkpoint in {output_dir}")
        log.info("resuming from %s", found)
        return found
    path = os.path.expanduser(str(resume))
    if not os.path.isdir(path):
        raise UserError(f"--resume: checkpoint not found: {resume}")
    if not checkpoint_is_complete(path):
        raise UserError(f"--resume: {resume} is incomplete (no readable trainer_state.json); "
                        "pass an earlier checkpoint or plain --resume for the latest complete one")
    return path
