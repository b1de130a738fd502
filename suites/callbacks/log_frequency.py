"""Log often enough that a short run's report has curves.

With the default logging_steps (10) a run of 8 steps logs no training line at all and one of 24
steps two: its report draws each curve as a dot or not at all. When the config does not set
train.logging_steps, a run logs at least every max_steps / POINTS steps (never less often than
the default): every step for runs up to 40 steps, every 10 from 200 steps on.
"""

from __future__ import annotations

from transformers import TrainerCallback

POINTS = 20  # training log lines a short run gets at least


def logging_steps_for(max_steps: int, default: int) -> int:
    return max(1, min(default, max_steps // POINTS))


class ShortRunLogging(TrainerCallback):
    """Lowers state.logging_steps (what the trainer's flow reads) once max_steps is known."""

    def on_train_begin(self, args, state, control, **kwargs):
        if args.logging_strategy == "steps" and state.max_steps > 0 and state.logging_steps >= 1:
            state.logging_steps = logging_steps_for(state.max_steps, int(state.logging_steps))
        return control


def attach(trainer, cfg) -> None:
    if "logging_steps" not in cfg.train:  # the user's own choice stands
        trainer.add_callback(ShortRunLogging())
