"""The model of a run directory, loaded once for serving, with what the run trained it to do: its chat
template, its end-of-turn tokens, its generation settings (SFT) or its labels (classification)."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

from ..errors import UserError

log = logging.getLogger("trainsuite")

RUN_CONFIG = "run_config.yaml"
SERVED_TASKS = ("sft", "classification")


@dataclass
class ServedRun:
    name: str  # the model id clients send and /v1/models lists: the run folder's name
    run_dir: str
    task: str
    cfg: object  # the run's RunConfig as it trained
    model: object
    tokenizer: object
    chat: bool = False  # trained on chat-templated conversations (SFT)
    stop_ids: tuple = ()  # eos and the end-of-turn tokens: generation stops there (SFT)
    context: int | None = None  # prompt + completion tokens the model's positions allow

    @property
    def device(self):
        return next(self.model.parameters()).device


def _run_config_path(run_dir: str) -> str:
    """RUN_DIR/run_config.yaml, or its parent's for a checkpoint-N folder."""
    for folder in (run_dir, os.path.dirname(os.path.abspath(run_dir))):
        path = os.path.join(folder, RUN_CONFIG)
        if os.path.isfile(path):
            return path
    raise UserError(f"serve: {run_dir} is not a trainsuite run directory (no {RUN_CONFIG})")


def check_run_dir(run_dir: str):
    """The run's config, or a UserError naming RUN_DIR: not a folder, not a run, no model, a family not served.
    Loads no model (the command line fails fast)."""
    if not os.path.isdir(run_dir):
        raise UserError(f"serve: {run_dir}: no such directory")
    from ..config.loader import saved

    path = _run_config_path(run_dir)
    try:
        cfg = saved(path)
    except UserError as exc:  # a run config of another trainsuite version, edited by hand, ...
        raise UserError(f"serve: {path}: {exc}") from None
    if cfg.task == "preference":  # a chat model, loaded and prompted as an SFT run's (sft_format.json included)
        cfg.task = "sft"
    if cfg.task not in SERVED_TASKS:
        raise UserError(f"serve: {run_dir} is a {cfg.task} run; serve takes sft, preference and classification runs")
    if not any(os.path.isfile(os.path.join(run_dir, f)) for f in ("config.json", "adapter_config.json")):
        raise UserError(f"serve: {run_dir} holds no trained model (no config.json or adapter_config.json); "
                        "did its training finish? A checkpoint-N folder inside it can be served too")
    return cfg


def load_run(run_dir: str) -> ServedRun:
    cfg = check_run_dir(run_dir)
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    from ..modeling import load_model

    # the run's own model (full weights, or its adapter on the base it names), as eval/predict load it;
    # a GGUF file the run started from (model.gguf_file) is its base's, not in the run folder
    cfg.model.name_or_path, cfg.model.from_config = os.path.abspath(run_dir), None
    cfg.model.gguf_file = None
    cuda = torch.cuda.is_available()
    if cfg.quantization is not None and not cuda:  # bitsandbytes 4/8 bit needs a GPU: serve unquantized
        log.info("serve: no GPU: the base model is loaded unquantized")
        cfg.quantization = None
    try:
        tokenizer = AutoTokenizer.from_pretrained(run_dir)
    except (OSError, ValueError) as exc:
        raise UserError(f"serve: {run_dir}: its tokenizer could not be loaded: {str(exc).splitlines()[0]}") from None
    if cfg.task == "sft":
        model = load_model(cfg, AutoModelForCausalLM, tokenizer)
    else:  # a LoRA run's base gets the trained head's shape before the adapter (and its head) go on
        model = load_model(cfg, AutoModelForSequenceClassification, tokenizer, _head_shape(run_dir))
    if cuda and cfg.quantization is None:
        model.to("cuda")
    model.eval()
    served = ServedRun(os.path.basename(os.path.abspath(run_dir)), run_dir, cfg.task, cfg, model, tokenizer)
    if cfg.task == "sft":
        _chat_setup(served)
    return served


def _head_shape(run_dir: str) -> dict:
    """config.json updates that shape a classification head as training did (suites/classification.py)."""
    from tasks.classification import REGRESSION

    from .classify import saved_labels

    saved = saved_labels(run_dir)
    if saved is None:  # an older run without label_map.json: its config.json has the head
        return {}
    problem_type, labels = saved
    if problem_type == REGRESSION:
        return {"problem_type": problem_type, "num_labels": 1}
    return {"problem_type": problem_type, "num_labels": len(labels), "id2label": dict(enumerate(labels)),
            "label2id": {name: i for i, name in enumerate(labels)}}


def _chat_setup(served: ServedRun) -> None:
    from tasks.instruction import CHATML_TEMPLATE, detect_format, end_of_turn_ids
    from tasks.trained_chat import trained_on_chat

    tok = served.tokenizer
    served.chat = trained_on_chat(served.cfg, detect_format)
    if served.chat and tok.chat_template is None:  # what training rendered with (tasks/instruction.py)
        tok.chat_template = CHATML_TEMPLATE
    if tok.pad_token_id is None:  # left padding of a batch needs one; it is masked out
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"
    served.stop_ids = tuple(end_of_turn_ids(tok))
    positions = getattr(served.model.config, "max_position_embeddings", None)
    served.context = positions if isinstance(positions, int) else None
