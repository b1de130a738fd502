"""`train.report_to` at config time: every integration named must exist and be installed."""

from __future__ import annotations

import importlib.util

from ..errors import UserError, did_you_mean

# report_to value -> (importable module(s), pip package)
PACKAGES = {"tensorboard": (("tensorboard", "tensorboardX"), "tensorboard"), "mlflow": (("mlflow",), "mlflow")}


def requested(train: dict) -> list[str]:
    value = train.get("report_to", "none")
    values = [value] if isinstance(value, str) else list(value or [])
    return [v for v in values if v not in ("none", None)]


# pip package of transformers' other integrations, where it differs from the report_to name
PIP_NAMES = {"flyte": "flytekit", "azure_ml": "azureml-core", "kubeflow": "kfp"}


def check_report_to(cfg) -> None:
    """Called by validate.py: an integration asked for by name must exist and be installed
    (transformers raises a RuntimeError deep inside Trainer otherwise). transformers' list of integrations
    is imported (seconds) only for a name other than none, all, tensorboard and mlflow."""
    for name in requested(cfg.train):
        if name == "all":
            continue
        if name in PACKAGES:
            modules, pip_name = PACKAGES[name]
            installed = any(importlib.util.find_spec(m) for m in modules)
        else:
            installed, pip_name = _other_integration(name)
        if not installed:
            raise UserError(f"config: train.report_to: {name} is not installed; pip install {pip_name} "
                            "(or set train.report_to: none)")


def _other_integration(name: str) -> tuple[bool, str]:
    """(installed, pip package) of one of transformers' other integrations; an unknown name is refused."""
    from transformers.integrations import integration_utils

    known = sorted(integration_utils.INTEGRATION_TO_CALLBACK)
    if name not in known:
        raise UserError(f"config: train.report_to: unknown integration {name!r} (one of none, all, "
                        f"{', '.join(known)}){did_you_mean(name, known)}")
    return name in integration_utils.get_available_reporting_integrations(), PIP_NAMES.get(name, name)
