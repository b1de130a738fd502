"""Instruction data for SFT: five record formats -> token ids and the mask of trained tokens.

Formats (`data.format`, else detected from the columns):
  text               {"text": ...}                                   loss on everything
  prompt_completion  {"prompt": ..., "completion": ...}              loss on the completion
  messages           {"messages": [{"role", "content"}, ...]}        loss on assistant turns (OpenAI style)
  sharegpt           {"conversations": [{"from", "value"}, ...]}     loss on assistant turns
  alpaca             {"instruction", "input" (optional), "output"}   loss on the output
                     (+ optional "history": [[instruction, answer], ...], trained too)
sharegpt and alpaca rows may carry a "system" column, which becomes the first (system) turn.

Conversations are rendered with the tokenizer's chat template (a built-in ChatML one when it has
none). The trained-token mask is read off the template itself: each assistant turn is the text the
template adds between `render(turns before it, add_generation_prompt=True)` and `render(turns up to
it)`, mapped to tokens through the tokenizer's character offsets. No string matching on role
markers, so it works for any template that renders a conversation as an extension of its prefix.
"""

from __future__ import annotations

import logging
import sys

import numpy as np

from .errors import DataError

from . import io
from .base import Task, where

log = logging.getLogger("trainsuite")

FORMATS = ("text", "prompt_completion", "messages", "sharegpt", "alpaca")
COLUMNS = {"text": ["text"], "prompt_completion": ["prompt", "completion"], "messages": ["messages"],
           "sharegpt": ["conversations"], "alpaca": ["instruction", "output"]}
PREDICT_COLUMNS = {"text": ["text"], "prompt_completion": ["prompt"], "messages": ["messages"],
                   "sharegpt": ["conversations"], "alpaca": ["instruction"]}
DEFAULT_LOSS_ON = {"text": "all", "prompt_completion": "completion", "messages": "assistant",
                   "sharegpt": "assistant", "alpaca": "assistant"}
ROLES = ("system", "user", "assistant", "tool")
REFERENCE = "reference"  # a predict row's expected answer, scored against the completion (else the final
#                          assistant turn of a conversation, or a prompt_completion row's completion)
SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                  "system": "system", "tool": "tool", "function_call": "assistant", "observation": "tool"}

# ChatML, with {% generation %} markers so that other tools (trl) can read the assistant mask too.
CHATML_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message['role'] + '\n' -}}"
    "{%- if message['role'] == 'assistant' -%}"
    "{% generation %}{{- message['content'] + '<|im_end|>' -}}{% endgeneration %}{{- '\n' -}}"
    "{%- else -%}{{- message['content'] + '<|im_end|>' + '\n' -}}{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\n' -}}{%- endif -%}"
)


# the tokens that end a reply besides eos: ChatML (Qwen, SmolLM), Llama 3, Gemma, Phi-3
END_OF_TURN = ("<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|end|>")


def end_of_turn_ids(tokenizer) -> list[int]:
    """The ids a reply ends with: eos and the end-of-turn tokens the vocabulary has (generation stops there)."""
    vocab = tokenizer.get_vocab()
    ids = [tokenizer.eos_token_id] + [tokenizer.convert_tokens_to_ids(t) for t in END_OF_TURN if t in vocab]
    return [i for i in dict.fromkeys(ids) if i is not None]


def prepare_chat_tokenizer(tokenizer, conversational: bool) -> None:
    """A tokenizer without a chat template gets the built-in ChatML one (and, for conversational data, its
    two tokens); one without a pad token pads with eos."""
    if tokenizer.chat_template is None:
        tokenizer.chat_template = CHATML_TEMPLATE
        missing = [t for t in ("<|im_start|>", "<|im_end|>") if t not in tokenizer.get_vocab()]
        if missing and conversational:
            tokenizer.add_special_tokens({"additional_special_tokens": missing})
            log.info("added ChatML tokens %s to the tokenizer (it had no chat template)", missing)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token


def detect_format(cols) -> str | None:
    cols = set(cols)
    if "messages" in cols:
        return "messages"
    if "conversations" in cols:
        return "sharegpt"
    if {"instruction", "output"} <= cols or ("instruction" in cols and "prompt" not in cols):
        return "alpaca"
    if "prompt" in cols:
        return "prompt_completion"
    if "text" in cols:
        return "text"
    return None


def data_format(cfg, cols, key: str = "data") -> str:
    fmt = cfg.data.format
    if fmt is not None and fmt not in FORMATS:
        raise DataError(f"config: data.format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    fmt = fmt or detect_format(cols)
    if fmt is None:
        raise DataError(f"{key}: cannot tell the SFT data format from the columns "
                        f"({', '.join(sorted(set(cols) - {io.LINE}))}); expected one of: "
                        + "; ".join(f"{f} ({', '.join(c)})" for f, c in COLUMNS.items()))
    return fmt


def predict_format(cfg, cols) -> str:
    """The format of predict rows: data.format names the training data's; rows of another format (plain
    prompts for a model trained on messages, a .txt file of prompts) are read by their own columns."""
    fmt = cfg.data.format
    if fmt in PREDICT_COLUMNS and set(PREDICT_COLUMNS[fmt]) <= set(cols):
        return fmt
    found = detect_format(cols)
    return found if found is not None else data_format(cfg, cols, "--input")


def required_columns(cfg, cols, split) -> list[str]:
    """Called by suites/config/validate.py before anything loads."""
    fmt = data_format(cfg, cols, f"data.{split}")
    return (PREDICT_COLUMNS if split == "predict" else COLUMNS)[fmt]


def loss_on(cfg, fmt: str) -> str:
    chosen = cfg.sft.loss_on or DEFAULT_LOSS_ON[fmt]
    if chosen != "all" and fmt == "text":
        raise DataError(f"config: sft.loss_on={chosen} needs prompt/completion or conversational data; "
                        "data.train is plain text (use sft.loss_on=all)")
    return chosen


# ------------------------------------------------------------------ records -> conversations


def to_messages(row, fmt: str) -> list[dict] | None:
    """A conversation as OpenAI-style messages, or None for plain text / plain prompt-completion."""
    if fmt == "messages":
        return [{"role": m.get("role"), "content": m.get("content")} for m in row["messages"]]
    if fmt == "sharegpt":
        turns = [{"role": SHAREGPT_ROLES.get(m.get("from"), m.get("from")), "content": m.get("value")}
                 for m in row["conversations"]]
        return _with_system(row, turns)
    if fmt == "alpaca":
        msgs = []
        for question, answer in row.get("history") or []:  # earlier turns, trained like the last one
            msgs += [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
        user = row["instruction"] + (f"\n\n{row['input']}" if row.get("input") else "")
        msgs.append({"role": "user", "content": user})
        if row.get("output") is not None:
            msgs.append({"role": "assistant", "content": row["output"]})
        return _with_system(row, msgs)
    if fmt == "prompt_completion" and isinstance(row["prompt"], list):  # conversational prompt-completion
        return list(row["prompt"]) + list(row.get("completion") or [])
    return None


def _with_system(row, turns: list[dict]) -> list[dict]:
    """A `system` column (alpaca and sharegpt data as LLaMA-Factory writes it) becomes the first turn."""
    system = row.get("system")
    if system and not (turns and turns[0].get("role") == "system"):
        return [{"role": "system", "content": system}, *turns]
    return turns


def conversation_problem(msgs, need_assistant: bool) -> str | None:
    if not isinstance(msgs, list) or not msgs:
        return "the conversation is empty or not a list of turns"
    prev = None
    for i, m in enumerate(msgs):
        if not isinstance(m.get("content"), str):
            return f"turn {i + 1} has no text content"
        role = m.get("role")
        if role not in ROLES:
            return f"turn {i + 1} has unknown role {role!r} (expected one of {', '.join(ROLES)})"
        if role == "system" and i > 0:
            return f"roles out of order: a system turn at position {i + 1} (only the first turn may be system)"
        if prev is None and role not in ("system", "user"):
            return f"roles out of order: the conversation starts with {role!r} (expected user or system)"
        if prev is not None and role == prev and role in ("user", "assistant"):
            return f"roles out of order: two {role} turns in a row (turns {i} and {i + 1})"
        prev = role
    if need_assistant and not any(m["role"] == "assistant" for m in msgs):
        return "no assistant turn (nothing to train on)"
    return None


def has_empty_reply(row, fmt: str) -> bool:
    """Whether an assistant reply of the row (a completion, an alpaca output or history answer, an
    assistant turn) is empty or whitespace only. Such a row is dropped whole, not just that turn:
    an empty reply marks a broken record, and the turns after it would still learn from a context
    in which the assistant said nothing."""
    if fmt == "text":
        return False
    msgs = to_messages(row, fmt)
    if msgs is None:  # plain prompt / completion
        completion = row.get("completion")
        return isinstance(completion, str) and not completion.strip()
    return any(m.get("role") == "assistant" and isinstance(m.get("content"), str) and not m["content"].strip()
               for m in msgs)


def record_problem(row, fmt: str, need: list[str]) -> str | None:
    """What keeps a record from becoming a conversation or a text (a missing or null column, a
    column of the wrong kind), before `to_messages` reads it."""
    for col in need:
        if row.get(col) is None:
            return f"column '{col}' is missing or null in this row (data format {fmt})"
    if fmt in ("messages", "sharegpt") and not isinstance(row[need[0]], list):
        return f"column '{need[0]}' must be a list of turns, got {row[need[0]]!r}"
    if fmt in ("alpaca", "sharegpt") and row.get("system") is not None and not isinstance(row["system"], str):
        return f"column 'system' must be text, got {row['system']!r}"
    if fmt == "alpaca":
        for col in ("instruction", "input", "output"):
            if row.get(col) is not None and not isinstance(row[col], str):
                return f"column '{col}' must be text, got {row[col]!r}"
        history = row.get("history")
        if history is not None and not (isinstance(history, list) and all(
                isinstance(h, (list, tuple)) and len(h) == 2 and all(isinstance(x, str) for x in h) for h in history)):
            return f"column 'history' must be a list of [instruction, answer] pairs of text, got {history!r}"
    if fmt == "prompt_completion" and isinstance(row["prompt"], list):
        completion = row.get("completion")
        if completion is not None and not isinstance(completion, list):
            return "a conversational prompt (a list of turns) needs a conversational completion, got " \
                   f"{completion!r}"
    if fmt in ("messages", "sharegpt") or (fmt == "prompt_completion" and isinstance(row["prompt"], list)):
        turns = row[need[0]] + (row.get("completion") or [] if fmt == "prompt_completion" else [])
        for i, m in enumerate(turns):
            if not isinstance(m, dict):
                return f"turn {i + 1} is not an object with a role and a content, got {m!r}"
    return None


# ------------------------------------------------------------------ the task


def _list_chunk(rows: list[np.ndarray]):
    """One chunk of rows (numpy arrays) as an Arrow list array: one copy of the tokens, no Python
    int per token; the schema `Dataset.from_dict` infers from lists of ints."""
    import pyarrow as pa

    offsets = np.zeros(len(rows) + 1, dtype=np.int32)
    np.cumsum([len(r) for r in rows], out=offsets[1:])
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(np.concatenate(rows)))


ENCODE_CHUNK = 1000  # rows rendered, then tokenized in one batched call


def _trained(offsets, ranges) -> np.ndarray:
    """Per token, whether it is trained: a token is trained when it holds any trained character, so a
    token that straddles the start of an answer (" cat" after a generation prompt ending in a space)
    is part of the answer. `offsets`: (start, end) characters of each token."""
    mask = np.zeros(len(offsets), dtype=bool)
    if len(offsets) and ranges:
        spans = np.asarray(offsets, dtype=np.int64).reshape(len(offsets), 2)
        starts, ends = spans[:, 0], spans[:, 1]
        for s, e in ranges:
            mask |= (starts < e) & (s < ends)
    return mask


class InstructionTask(Task):
    def __init__(self, cfg):
        super().__init__(cfg)
        self.format: str | None = None
        self.loss_on: str | None = None
        self.stats: dict = {}
        self.generation_rows: dict = {}  # split -> [(prompt text, reference)] for generation eval
        self.chat = False  # training rows rendered with the chat template (tasks/trained_chat.py)

    def check(self, ds, key, spec) -> None:
        fmt = predict_format(self.cfg, ds.column_names) if key == "predict" else data_format(self.cfg, ds.column_names, key)
        if self.format is not None and fmt != self.format and key != "predict":
            raise DataError(f"{key}: {spec}: data format {fmt} differs from the training data's {self.format}; "
                            "use one format (or set data.format)")
        self.format = self.format or fmt
        need = (PREDICT_COLUMNS if key == "predict" else COLUMNS)[fmt]
        for col in need:
            if col not in ds.column_names:
                raise DataError(f"{key}: {spec}: no column '{col}' for data format {fmt} "
                                f"(found: {', '.join(sorted(set(ds.column_names) - {io.LINE}))})")
        for row in io.iter_rows(ds):
            problem = record_problem(row, fmt, need)
            if problem:
                raise DataError(f"{where(spec, row)}: {problem}")
            msgs = to_messages(row, fmt)
            if msgs is not None:
                self.chat = self.chat or key == "data.train"
                problem = conversation_problem(msgs, need_assistant=False)
                if problem:
                    raise DataError(f"{where(spec, row)}: {problem}")
                continue
            for col in need:
                if not isinstance(row[col], str):
                    raise DataError(f"{where(spec, row)}: column '{col}' must be text, got {row[col]!r}")
            if fmt == "text" and not row["text"].strip():
                raise DataError(f"{where(spec, row)}: column 'text' is empty")

    def line_column(self) -> str:
        return "prompt"  # `predict --input prompts.txt`: one user prompt a line (tasks/trained_chat.py renders it)

    def texts_for_tokenizer(self, ds):
        fmt = self.format
        for row in io.iter_rows(ds):
            msgs = to_messages(row, fmt)
            if msgs is not None:
                yield from (m["content"] for m in msgs)
            else:
                yield from (row[c] for c in COLUMNS[fmt] if isinstance(row.get(c), str))

    def setup(self, splits, tokenizer) -> None:
        prepare_chat_tokenizer(tokenizer, conversational=self.format in ("messages", "sharegpt", "alpaca"))
        # predict trains nothing: its rows' format (plain prompts, say) need not fit sft.loss_on
        self.loss_on = loss_on(self.cfg, self.format) if "predict" not in splits else "all"
        log.info("sft data: format %s%s", self.format, "" if "predict" in splits else f", loss on {self.loss_on}")
        if self.chat:  # kept in sft_format.json: a default system prompt the template adds shows there
            from .trained_chat import rendered_user_turn

            from jinja2 import TemplateError

            try:
                self.user_turn = rendered_user_turn(self._renderer(tokenizer).conversation)
            except TemplateError:  # a template that refuses a lone user turn: nothing to record, training goes on
                self.user_turn = None

    user_turn = None  # how a one-turn prompt renders (tasks/trained_chat.py), for conversational data

    def save(self, output_dir: str) -> None:
        from .trained_chat import save

        save(output_dir, self.format, self.chat, self.user_turn)

    # -- rendering -----------------------------------------------------------
    def render(self, row, tokenizer) -> tuple[str, list[tuple[int, int]], str | None, str | None]:
        """(full text, trained character ranges, generation prompt, reference completion)."""
        fmt = self.format
        msgs = to_messages(row, fmt)
        eos = tokenizer.eos_token or ""
        if msgs is None and fmt == "text":
            text = row["text"] + eos
            return text, [(0, len(text))], None, None
        if msgs is None:  # plain prompt / completion: no template
            prompt, completion = row["prompt"], row.get("completion")
            if completion is None:
                return prompt, [], prompt, None
            text = prompt + completion + eos
            ranges = [(0, len(text))] if self.loss_on == "all" else [(len(prompt), len(text))]
            return text, ranges, prompt, completion
        render = self._renderer(tokenizer).conversation(msgs)  # (turns, generation prompt?) -> text
        text = render(len(msgs))
        turns = [i for i, m in enumerate(msgs) if m["role"] == "assistant"]
        ranges = []
        for i in turns if self.loss_on != "all" else []:  # loss on all needs no turn boundaries
            before, upto = render(i, True), render(i + 1)
            if not (upto.startswith(before) and text.startswith(upto)):
                raise DataError("the chat template does not render a conversation as an extension of its first "
                                "turns, which the assistant-only loss mask needs; set sft.loss_on=all or use a "
                                "template that does (the built-in ChatML one does)")
            end = len(before) + len(upto[len(before):].rstrip())
            ranges.append((len(before), end))
        if self.loss_on == "all":
            ranges = [(0, len(text))]
        elif self.loss_on == "completion" and fmt == "prompt_completion":  # the turns of the completion
            ranges = [r for i, r in zip(turns, ranges) if i >= len(row["prompt"])]
        elif self.loss_on == "completion":
            ranges = ranges[-1:]
        if msgs[-1]["role"] == "assistant":  # the answer to generate, and its reference
            prompt, ref = render(len(msgs) - 1, True), msgs[-1]["content"]
        else:  # a conversation that ends in a user (or tool) turn: the whole of it is the prompt
            prompt, ref = render(len(msgs), True), None
        return text, ranges, prompt, ref

    def _renderer(self, tokenizer):
        from .chat_render import PrefixRenderer

        cached = getattr(self, "_prefix_renderer", None)  # one per tokenizer and template
        if cached is None or cached.tokenizer is not tokenizer or cached.chat_template != tokenizer.chat_template:
            cached = PrefixRenderer(tokenizer, fast=self.fast_render)
            cached.chat_template = tokenizer.chat_template
            self._prefix_renderer = cached
        return cached

    fast_render = True  # False: every prefix through tokenizer.apply_chat_template (the reference)

    def render_row(self, row, tokenizer, spec):
        """`render`, with the file and line of the row in the errors, and a chat template that
        refuses a conversation (`raise_exception`) reported as a user error."""
        from jinja2 import TemplateError

        try:
            return self.render(row, tokenizer)
        except DataError as err:
            raise DataError(f"{where(spec, row)}: {err}") from None
        except TemplateError as err:
            raise DataError(f"{where(spec, row)}: the chat template refused this conversation: {err}") from None

    # -- encoding ------------------------------------------------------------
    def _encode_chunks(self, ds, tokenizer, spec, bar, columns, gen_rows, empty, counts) -> None:
        """Render, tokenize and mask `ds` chunk by chunk into `columns` (one Arrow list array per
        chunk and column): no Python int per token is kept, so memory stays ~12 bytes a token."""
        max_len, overlong = self.cfg.sft.max_length, self.cfg.sft.overlong
        for rows in io.row_batches(ds, ENCODE_CHUNK):
            chunk = [row for row in rows if not has_empty_reply(row, self.format)]  # dropped whole
            if len(chunk) < len(rows):
                counts["empty_reply"] += len(rows) - len(chunk)
                lines = counts["empty_reply_lines"]  # the first few, for the warning
                lines += [r.get(io.LINE, "?") for r in rows if has_empty_reply(r, self.format)][:5 - len(lines)]
            if not chunk:
                bar.update(len(rows))
                continue
            rendered = [self.render_row(row, tokenizer, spec) for row in chunk]
            enc = tokenizer([r[0] for r in rendered], add_special_tokens=False, return_offsets_mapping=True)
            kept_ids, kept_labels = [], []
            for row, (_, ranges, prompt, ref), ids, offsets in zip(chunk, rendered, enc["input_ids"],
                                                                     enc["offset_mapping"]):
                mask = _trained(offsets, ranges)
                if not mask[1:].any():  # position 0 is never a prediction target
                    empty.append(row)
                    continue
                if len(ids) > max_len:
                    if overlong == "drop":
                        counts["dropped"] += 1
                        continue
                    counts["truncated"] += 1
                    ids, mask = ids[:max_len], mask[:max_len]
                    if not mask[1:].any():
                        counts["emptied"] += 1
                        continue
                if prompt is not None and ref is not None:  # generation eval: the rows the loss sees
                    gen_rows.append((prompt, ref))
                ids = np.asarray(ids, dtype=np.int32)  # the dtypes Dataset.from_dict infers (as before)
                labels = np.where(mask, ids, -100).astype(np.int64)
                labels[0] = -100  # never predicted; keeps a packed document from predicting its neighbour
                kept_ids.append(ids)
                kept_labels.append(labels)
            if kept_ids:
                columns["input_ids"].append(_list_chunk(kept_ids))
                columns["labels"].append(_list_chunk(kept_labels))
            bar.update(len(rows))

    @staticmethod
    def _report_empty_replies(key, spec, rows: int, n: int, lines: list) -> None:
        if not n:
            return
        src = spec if isinstance(spec, str) else "data"
        at = ", ".join(f"{src}:{line}" for line in lines) + (", ..." if n > len(lines) else "")
        if n == rows:
            raise DataError(f"{key}: {src}: every row has an empty or whitespace-only assistant reply ({n} rows: "
                            f"{at}); nothing to train on")
        log.warning("%s: dropped %d of %d rows with an empty or whitespace-only assistant reply (the whole "
                    "conversation): %s", key, n, rows, at)

    def encode(self, ds, tokenizer, split):
        import datasets

        spec = getattr(self.cfg.data, split, None) if split in ("train", "eval") else "--input"
        key = f"data.{split}" if split in ("train", "eval") else "--input"
        self._prefix_renderer = None  # built anew: setup may have changed the template or special tokens
        if split == "predict":
            from .trained_chat import as_user_turn, trained_on_chat

            chat = self.format == "prompt_completion" and trained_on_chat(self.cfg, detect_format)
            prompts, references = [], []
            for r in io.iter_rows(ds):
                _, _, prompt, ref = self.render_row(as_user_turn(r) if chat and isinstance(r["prompt"], str) else r,
                                                    tokenizer, spec)
                prompts.append(prompt)
                references.append(r[REFERENCE] if isinstance(r.get(REFERENCE), str) else ref)
            if any(p is None for p in prompts):
                raise DataError(f"{key}: predict needs prompts; plain text rows have none (give a .txt file, one "
                                "prompt a line, or rows with prompt or messages)")
            return datasets.Dataset.from_dict({"prompt": prompts, "reference": references})
        max_len, overlong = self.cfg.sft.max_length, self.cfg.sft.overlong
        columns, gen_rows = {"input_ids": [], "labels": []}, []
        empty, counts = [], {"truncated": 0, "dropped": 0, "emptied": 0, "empty_reply": 0, "empty_reply_lines": []}
        from tqdm.auto import tqdm

        bar = tqdm(total=len(ds), desc=f"tokenizing {split}", unit="row", disable=not sys.stderr.isatty(),
                   leave=False)
        import gc

        gc_was_on = gc.isenabled()
        gc.disable()  # each chunk makes ~10^5 short-lived lists, strings and ints, none in a cycle: no collector passes needed
        try:
            self._encode_chunks(ds, tokenizer, spec, bar, columns, gen_rows, empty, counts)
        finally:
            if gc_was_on:
                gc.enable()
        truncated, dropped, emptied = counts["truncated"], counts["dropped"], counts["emptied"]
        bar.close()
        self._report_empty_replies(key, spec, len(ds), counts["empty_reply"], counts["empty_reply_lines"])
        if empty:
            msgs = to_messages(empty[0], self.format)
            why = conversation_problem(msgs, True) if msgs is not None else None
            if msgs is not None and why is None and self.loss_on != "all":
                why = ("its assistant turns give no token to train on (a chat template that renders no text "
                       "for them)")
            raise DataError(f"{key}: {len(empty)} of {len(ds)} rows have no trained tokens with "
                            f"sft.loss_on={self.loss_on}, e.g. {where(spec, empty[0])}"
                            f"{': ' + why if why else ''}; fix or remove them (or set sft.loss_on=all)")
        self.stats[split] = {"rows": len(ds), "truncated": truncated, "dropped_overlong": dropped,
                             "dropped_no_trained_token_after_truncation": emptied,
                             "dropped_empty_reply": counts["empty_reply"]}
        if truncated or dropped:
            log.warning("%s: %d rows longer than sft.max_length=%d %s%s", key, truncated + dropped, max_len,
                        "dropped" if dropped else "truncated",
                        f" ({emptied} then dropped: no trained token left)" if emptied else "")
        if not columns["input_ids"]:
            raise DataError(f"{key}: no rows left after sft.overlong={overlong} (sft.max_length={max_len})")
        self.generation_rows[split] = gen_rows
        import pyarrow as pa

        return datasets.Dataset(pa.table({k: pa.chunked_array(v) for k, v in columns.items()}))
