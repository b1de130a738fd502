"""`train.report_to`: TensorBoard and MLflow through transformers' integrations, plus what they leave out.

- A missing package is a config error (suites/config/integrations.py), found before any model loads.
- MLflow logs to a local file store, OUTPUT_DIR/mlruns, unless MLFLOW_TRACKING_URI says otherwise.
- The run config (secrets redacted) and the model's parameter counts (total / trainable) go to every
  integration that is on.
"""

from __future__ import annotations

import json
import os

from transformers import TrainerCallback

from ..config.integrations import requested
from ..config.redact import redact

def attach(cfg, trainer, counts: dict) -> None:
    """Before training: MLflow's default store, and a callback that logs config and parameter counts."""
    names = requested(cfg.train)
    if not names:
        return
    if ("mlflow" in names or "all" in names) and not os.environ.get("MLFLOW_TRACKING_URI"):
        store = os.path.abspath(os.path.join(cfg.output_dir, "mlruns"))
        os.environ["MLFLOW_TRACKING_URI"] = "file://" + store
    trainer.add_callback(RunInfoCallback(redact(cfg.to_dict()), counts, trainer.callback_handler.callbacks))


class RunInfoCallback(TrainerCallback):
    """Runs after the integrations' own on_train_begin (it is added after them), so their run or
    writer is open."""

    def __init__(self, config: dict, counts: dict, callbacks: list):
        self.config, self.counts, self.callbacks = config, counts, callbacks

    def on_train_begin(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        from transformers.integrations import MLflowCallback, TensorBoardCallback

        for cb in self.callbacks:
            if isinstance(cb, TensorBoardCallback) and cb.tb_writer is not None:
                cb.tb_writer.add_text("run_config", "```\n" + json.dumps(self.config, indent=2) + "\n```")
                for key, value in self.counts.items():
                    cb.tb_writer.add_scalar(f"model/{key}", value, 0)
            elif isinstance(cb, MLflowCallback) and getattr(cb, "_initialized", False):
                mlflow = cb._ml_flow
                mlflow.log_params({f"model.{k}": v for k, v in self.counts.items()})
                mlflow.log_dict(self.config, "run_config.json")

