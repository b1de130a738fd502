"""`train.report_to`: TensorBoard and MLflow through transformers' integrations, plus what they leave out.

- A missing package is a config error (one line naming the pip install), found before any model loads.
- MLflow logs to a local file store, OUTPUT_DIR/mlruns, unless MLFLOW_TRACKING_URI says otherwise.
- The run config and the model's parameter counts (total / trainable) go to every integration that is on.
"""

from __future__ import annotations

import importlib.util
import json
import os

from transformers import TrainerCallback

from .errors import UserError

# report_to value -> (importable module(s), pip package)
PACKAGES = {"tensorboard": (("tensorboard", "tensorboardX"), "tensorboard"), "mlflow": (("mlflow",), "mlflow")}


def requested(train: dict) -> list[str]:
    value = train.get("report_to", "none")
    values = [value] if isinstance(value, str) else list(value or [])
    return [v for v in values if v not in ("none", None)]


def check_report_to(cfg) -> None:
    """Called by suites/validate.py: an integration asked for by name must be installed."""
    for name in requested(cfg.train):
        modules, pip_name = PACKAGES.get(name, ((), None))
        if modules and not any(importlib.util.find_spec(m) for m in modules):
            raise UserError(f"config: train.report_to: {name} is not installed; pip install {pip_name} "
                            "(or set train.report_to: none)")


def attach(cfg, trainer, counts: dict) -> None:
    """Before training: MLflow's default store, and a callback that logs config and parameter counts."""
    names = requested(cfg.train)
    if not names:
        return
    if ("mlflow" in names or "all" in names) and not os.environ.get("MLFLOW_TRACKING_URI"):
        store = os.path.abspath(os.path.join(cfg.output_dir, "mlruns"))
        os.environ["MLFLOW_TRACKING_URI"] = "file://" + store
    trainer.add_callback(RunInfoCallback(cfg.to_dict(), counts, trainer.callback_handler.callbacks))


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

