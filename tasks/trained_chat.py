"""Whether an SFT model was trained on chat-templated conversations, so that `predict` of plain
{"prompt": ...} rows renders each prompt as a user turn with that template (a model trained on `messages`
has only ever seen its prompts inside the template; sent raw, it continues the text instead of answering).

Training writes OUTPUT_DIR/sft_format.json; a run without it (older runs) is judged by the columns of the
config's data.train.
"""

from __future__ import annotations

import json
import os

from . import io

FORMAT_FILE = "sft_format.json"
CHAT_FORMATS = ("messages", "sharegpt", "alpaca")


PROMPT_SLOT = "{prompt}"


def save(output_dir: str, fmt: str, chat: bool, user_turn: str | None = None) -> None:
    """`user_turn`: how the template renders a one-turn prompt (PROMPT_SLOT in place of its text), up to
    the generation prompt: the record of what training, eval and predict put around a prompt (a default
    system prompt that the template inserts included)."""
    os.makedirs(output_dir, exist_ok=True)
    record = {"format": fmt, "chat_template": bool(chat)}
    if user_turn is not None:
        record["user_turn_rendered"] = user_turn
    with open(os.path.join(output_dir, FORMAT_FILE), "w", encoding="utf-8") as fh:
        json.dump(record, fh, indent=1)


def rendered_user_turn(render_conversation) -> str:
    """`render_conversation(msgs)` -> render(n, add_generation_prompt) (tasks/chat_render.py) applied to a
    one-turn conversation."""
    return render_conversation([{"role": "user", "content": PROMPT_SLOT}])(1, True)


def trained_on_chat(cfg, detect_format) -> bool:
    """From the trained model's sft_format.json, else from the training data's format (`detect_format`:
    tasks.instruction's, passed in so that the two modules do not import each other)."""
    from .io import resolve_model as resolve

    path = resolve(cfg.model.name_or_path) if cfg.model.name_or_path else None
    saved = os.path.join(path, FORMAT_FILE) if path and os.path.isdir(path) else None
    if saved and os.path.isfile(saved):
        with open(saved, encoding="utf-8") as fh:
            return bool(json.load(fh).get("chat_template"))
    spec = cfg.data.train
    try:
        cols = io.peek_columns(spec, "data.train") if spec is not None and io.is_local(spec) else None
    except Exception:  # noqa: BLE001 - a training file gone or changed since: no hint from it
        cols = None
    fmt = cfg.data.format or (detect_format(cols) if cols else None)
    return fmt in CHAT_FORMATS


def as_user_turn(row: dict) -> dict:
    """A plain-prompt row as a one-turn conversation (a `system` column becomes the system turn); a plain
    completion, the reference answer, becomes its assistant turn."""
    turns = [{"role": "user", "content": row["prompt"]}]
    if row.get("system"):
        turns.insert(0, {"role": "system", "content": row["system"]})
    completion = row.get("completion")
    if isinstance(completion, str):
        completion = [{"role": "assistant", "content": completion}]
    return {**row, "prompt": turns, "completion": completion}
