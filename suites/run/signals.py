"""How a training run ends early on purpose, and the exit code it leaves.

- `GracefulStop` (callback): the first SIGTERM/SIGINT asks for a checkpoint at the end of the
  current optimizer step, then training stops and the command exits with EXIT_INTERRUPTED; a
  second signal ends the process at once (the default action of that signal).
- `raise_if_stopped`, after trainer.train(): a signal (EXIT_INTERRUPTED, with the command that
  continues the run) or the non-finite guard of suites/callbacks/nonfinite.py (EXIT_NONFINITE).
"""

from __future__ import annotations

import logging
import os
import shlex
import signal

import torch
from transformers import TrainerCallback

from ..callbacks import find_callback
from ..callbacks.nonfinite import EXIT_NONFINITE, NonFiniteGuard
from ..checkpoints import latest_checkpoint
from .env import COMMAND_ENV

log = logging.getLogger("trainsuite")

EXIT_INTERRUPTED = 3  # a signal stopped training after saving a checkpoint; `--resume` continues it



class RunStopped(Exception):
    """Training ended early on purpose; the message says why and what to do next."""

    exit_code = 1


class TrainingInterrupted(RunStopped):
    exit_code = EXIT_INTERRUPTED


class NonFiniteStop(RunStopped):
    exit_code = EXIT_NONFINITE


class GracefulStop(TrainerCallback):
    """SIGTERM/SIGINT -> checkpoint at the next step boundary, then stop."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self):
        self.received = None  # the signal number, once one arrived
        self.began = False  # training began: from here on a signal saves a checkpoint (before: Ctrl-C, exit 130)
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
        self.began = True
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


def restore_signal_handlers(trainer) -> None:
    stop = find_callback(trainer, GracefulStop)
    if stop is not None:
        stop.on_train_end(None, None, None)


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
