"""`NonFiniteGuard` (callback): before each optimizer step, checks the micro-batch losses and the
gradients. `nonfinite: stop` drops the update, saves nothing more (the last checkpoint stays the last
good one) and has the run end with EXIT_NONFINITE naming the step (suites/run/signals.py);
`nonfinite: skip` drops the update and counts it (results.json: nonfinite_steps_skipped).
"""

from __future__ import annotations

import logging

import torch
from transformers import TrainerCallback

log = logging.getLogger("trainsuite")

EXIT_NONFINITE = 4  # a non-finite loss or gradient stopped training (nonfinite: stop)


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
        flag = torch.stack([f.reshape(()) for f in flags]).any().to(torch.int32)
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
