"""Inside a trial's `trainsuite train` process: each evaluation goes to the study (trial.report), and a
trial the pruner gives up on stops gracefully (the run saves and writes its results as after any early
stop). The sweep process passes the study in the environment (study.TRIAL_ENV); what the pruner
decided is left in OUTPUT_DIR/sweep_trial.json for it.
"""

from __future__ import annotations

import json
import logging
import os

from transformers import TrainerCallback

from .study import TRIAL_ENV, TRIAL_FILE, load_study, metric_key, sweep_metric

log = logging.getLogger("trainsuite")


class SweepReporter(TrainerCallback):
    def __init__(self, env_value: str, cfg, metric: str):
        where = json.loads(env_value)  # {storage, study, trial_id}
        self.key = metric_key(metric)
        self.output_dir = cfg.output_dir
        self.rank0 = int(os.environ.get("RANK", "0")) == 0
        self.trial = None
        if self.rank0:
            import optuna

            study = load_study(where["storage"], where["study"], cfg.sweep.pruner, cfg.sweep.prune_after_step)
            self.trial = optuna.Trial(study, int(where["trial_id"]))
        self.steps = []

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if not metrics or self.key not in metrics:
            return
        prune = False
        if self.trial is not None:
            self.trial.report(float(metrics[self.key]), state.global_step)
            self.steps.append(state.global_step)
            prune = bool(self.trial.should_prune())  # numpy.bool_ from the median pruner
        prune = _same_on_every_rank(prune)
        if prune:
            log.info("sweep: the pruner stops this trial at step %d (%s %.4g)", state.global_step,
                     self.key, metrics[self.key])
            control.should_training_stop = True
        if self.trial is not None:
            _write(self.output_dir, {"pruned": prune, "pruned_at_step": state.global_step if prune else None,
                                     "reported_steps": self.steps})


def _same_on_every_rank(flag: bool) -> bool:
    """Rank 0 asks the study; the other processes of a multi-process trial follow it (else one stops
    while the others wait for it)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return flag
    box = [flag]
    dist.broadcast_object_list(box, src=0)
    return bool(box[0])


def _write(output_dir: str, data: dict) -> None:
    os.makedirs(output_dir, exist_ok=True)
    tmp = os.path.join(output_dir, TRIAL_FILE + ".tmp")
    with open(tmp, "w") as fh:
        json.dump(data, fh)
    os.replace(tmp, os.path.join(output_dir, TRIAL_FILE))


def attach(trainer, cfg) -> None:
    """Adds the reporter when this run is a trial of a sweep."""
    value = os.environ.get(TRIAL_ENV)
    if value and cfg.sweep is not None:
        trainer.add_callback(SweepReporter(value, cfg, sweep_metric(cfg)))
