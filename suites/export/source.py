"""What a run directory holds, for export: its family, its model (a LoRA adapter folded into its base) and
its tokenizer."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import yaml

from ..errors import UserError
from tasks.classification import LABEL_FILE, REGRESSION
from tasks.trained_chat import FORMAT_FILE

FAMILIES = ("classification", "seq2seq", "sft")


@dataclass
class Run:
    path: str
    family: str
    model_type: str
    adapter: bool
    config: dict  # the model's config.json (the base's for an adapter)


def describe(run_dir: str) -> Run:
    """From the run's files only (no weights loaded)."""
    if not os.path.isdir(run_dir):
        raise UserError(f"export: {run_dir}: no such run directory")
    adapter = os.path.isfile(os.path.join(run_dir, "adapter_config.json"))
    config = _model_config(run_dir, adapter)
    family = _family(run_dir, config)
    return Run(run_dir, family, config.get("model_type", "?"), adapter, config)


def _model_config(run_dir: str, adapter: bool) -> dict:
    path = os.path.join(run_dir, "config.json")
    if adapter and not os.path.isfile(path):
        with open(os.path.join(run_dir, "adapter_config.json")) as fh:
            base = json.load(fh).get("base_model_name_or_path")
        from transformers import AutoConfig

        try:
            return AutoConfig.from_pretrained(base).to_dict()
        except (OSError, ValueError, TypeError) as exc:
            raise UserError(f"export: base model '{base}' of {run_dir} could not be read: "
                            f"{str(exc).splitlines()[0]}") from None
    if not os.path.isfile(path):
        raise UserError(f"export: {run_dir}: no config.json or adapter_config.json (not a trained model; "
                        "a run saves its model in output_dir when training ends)")
    with open(path) as fh:
        return json.load(fh)


def _family(run_dir: str, config: dict) -> str:
    """run_config.yaml's task; a bare model folder (a `trainsuite merge` output) by its architecture."""
    saved = os.path.join(run_dir, "run_config.yaml")
    if os.path.isfile(saved):
        with open(saved) as fh:
            task = (yaml.safe_load(fh) or {}).get("task")
        if task in FAMILIES:
            return task
    arch = " ".join(config.get("architectures") or ())
    if "ForSequenceClassification" in arch:
        return "classification"
    if "ForCausalLM" in arch or "LMHeadModel" in arch or os.path.isfile(os.path.join(run_dir, FORMAT_FILE)):
        return "sft"
    if config.get("is_encoder_decoder"):
        return "seq2seq"
    raise UserError(f"export: {run_dir}: cannot tell the model's task family (architectures: {arch or 'none'})")


AUTO_CLASSES = {"classification": "AutoModelForSequenceClassification", "seq2seq": "AutoModelForSeq2SeqLM",
                "sft": "AutoModelForCausalLM"}


def head_shape(run_dir: str) -> dict:
    """A classifier's head as training shaped it (label_map.json): a LoRA run saves no config.json, and its
    base knows nothing of the labels."""
    path = os.path.join(run_dir, LABEL_FILE)
    if not os.path.isfile(path):
        return {}
    with open(path) as fh:
        saved = json.load(fh)
    if saved.get("problem_type") == REGRESSION:
        return {"problem_type": REGRESSION, "num_labels": 1}
    labels = saved["labels"]
    return {"problem_type": saved.get("problem_type"), "num_labels": len(labels),
            "id2label": dict(enumerate(labels)), "label2id": {name: i for i, name in enumerate(labels)}}


def load(run: Run):
    """(model in fp32 on the CPU, eval mode; tokenizer). An SFT adapter is merged the way `trainsuite merge`
    does; another family's adapter is folded into its base shaped as in training."""
    import torch
    import transformers
    from transformers import AutoTokenizer

    if run.adapter and run.family == "sft":
        from ..run.merge import load_merged

        model, tokenizer, _ = load_merged(run.path, command="export")
    elif run.adapter:
        from peft import PeftModel

        with open(os.path.join(run.path, "adapter_config.json")) as fh:
            base = json.load(fh)["base_model_name_or_path"]
        tokenizer = AutoTokenizer.from_pretrained(run.path)
        # a new head (3 labels on a 2-label base) is re-made at its size; the adapter carries its weights
        updates = {**head_shape(run.path), "ignore_mismatched_sizes": True} if run.family == "classification" else {}
        model = getattr(transformers, AUTO_CLASSES[run.family]).from_pretrained(base, dtype=torch.float32, **updates)
        if len(tokenizer) > model.get_input_embeddings().num_embeddings:
            model.resize_token_embeddings(len(tokenizer))
        model = PeftModel.from_pretrained(model, run.path).merge_and_unload()
    else:
        cls = getattr(transformers, AUTO_CLASSES[run.family])
        model = cls.from_pretrained(run.path, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(run.path)
    return model.eval(), tokenizer
