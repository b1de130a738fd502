"""Preference pairs for DPO and its cousins: a prompt, a chosen and a rejected reply -> token ids.

Rows (`chosen` and `rejected` always; the prompt in one of three places):
  strings            {"prompt": str, "chosen": str, "rejected": str}            plain text, eos after each reply
  conversational     {"prompt": [turns], "chosen": [assistant turn], "rejected": [assistant turn]}
                     (a string prompt with turn replies is a user turn; replies may be plain strings)
  implicit prompt    {"chosen": [user, assistant], "rejected": [user, assistant]} (UltraFeedback-binarized):
                     the turns before the final reply are the prompt, and must be the same on both sides;
                     a `prompt` given beside such full conversations must be their start
  ShareGPT pairs     {"conversations": [{"from", "value"}...], "chosen": {"from": "gpt", "value"}, "rejected": ...}
An optional `system` column becomes the first turn.

The prompt is rendered and tokenized ONCE (the chat template with the generation prompt), and each
reply is the text the template adds after it, up to and including its end-of-turn token, tokenized on
its own: chosen and rejected see exactly the same prompt tokens, the ones generation starts from, and
the loss mask (collators/preference.py) covers the reply tokens alone.

Truncation keeps the replies whole: a prompt longer than preference.max_prompt_length keeps its last
tokens; a pair still longer than preference.max_length loses more of its prompt from the left (at least
one token stays); a reply that cannot fit even then drops the pair. Both are counted and reported.
"""

from __future__ import annotations

import logging

from . import io
from .base import Task, where
from .errors import DataError
from .instruction import SHAREGPT_ROLES, conversation_problem, prepare_chat_tokenizer

log = logging.getLogger("trainsuite")

SIDES = ("chosen", "rejected")
REFERENCE_FILE = "preference_reference.json"  # in a run's output_dir: the model its training started from
PROMPT_COLUMNS = ("prompt", "conversations")


def required_columns(cfg, cols, split) -> list[str]:
    """Called by suites/config/validate.py before anything loads."""
    if split == "predict":
        return ["prompt"] if "conversations" not in cols else ["conversations"]
    return list(SIDES)


def _turn(value) -> dict | None:
    """One turn ({"role", "content"} or ShareGPT's {"from", "value"}) as {"role", "content"}."""
    if not isinstance(value, dict):
        return None
    if "from" in value:
        return {"role": SHAREGPT_ROLES.get(value.get("from"), value.get("from")), "content": value.get("value")}
    return {"role": value.get("role"), "content": value.get("content")}


def _turns(value, default_role: str) -> list[dict] | None:
    """A side as a list of turns: a string is one turn of `default_role`; None when not turns at all."""
    if isinstance(value, str):
        return [{"role": default_role, "content": value}]
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list):
        return None
    turns = [_turn(t) for t in value]
    return None if any(t is None for t in turns) else turns


def _split_final_reply(turns: list[dict]) -> tuple[list[dict], list[dict]]:
    """(the turns before the final assistant reply, that reply)."""
    if turns and turns[-1]["role"] == "assistant":
        return turns[:-1], turns[-1:]
    return turns, []


def to_pair(row) -> tuple[str, object, object, object]:
    """(kind, prompt, chosen, rejected) of a row: kind "text" (three strings) or "chat" (prompt turns,
    one assistant turn each side). Raises DataError (without the file and line) for what cannot be a pair."""
    for side in SIDES:
        if row.get(side) is None:
            raise DataError(f"column '{side}' is missing or null in this row (every pair needs a chosen and a "
                            "rejected reply)")
    prompt = row.get("prompt") if row.get("prompt") is not None else row.get("conversations")
    values = [prompt, row["chosen"], row["rejected"]]
    if all(isinstance(v, str) for v in values):  # plain text
        chosen, rejected = row["chosen"], row["rejected"]
        starts = [v.startswith(prompt) and bool(prompt) for v in (chosen, rejected)]
        if all(starts):  # whole texts that begin with the prompt
            chosen, rejected = chosen[len(prompt):], rejected[len(prompt):]
        elif any(starts):
            side = SIDES[starts.index(False)]
            raise DataError(f"the prompt is not a prefix of '{side}' (it is of the other reply)")
        if not prompt.strip():
            raise DataError("the prompt is empty")
        return "text", prompt, chosen, rejected
    if prompt is None and all(isinstance(v, str) for v in values[1:]):
        raise DataError("no 'prompt' column in this row (string replies need a prompt)")
    sides = []
    for side in SIDES:
        turns = _turns(row[side], "assistant")
        if turns is None:
            raise DataError(f"column '{side}' must be text, a turn or a list of turns, got {row[side]!r}")
        sides.append(turns)
    prompt_turns = _turns(prompt, "user") if prompt is not None else None
    if prompt is not None and prompt_turns is None:
        raise DataError(f"column 'prompt' must be text or a list of turns, got {prompt!r}")
    replies = []
    for side, turns in zip(SIDES, sides):
        before, reply = _split_final_reply(turns)
        if not reply:
            raise DataError(f"'{side}' does not end with an assistant reply")
        if before:  # a whole conversation: its start is the prompt
            if prompt_turns is not None and before != prompt_turns:
                raise DataError(f"the prompt is not a prefix of '{side}' (its turns before the reply differ from "
                                "the prompt's)")
            replies.append((before, reply))
        else:
            replies.append((prompt_turns, reply))
    (p_chosen, chosen), (p_rejected, rejected) = replies
    if p_chosen is None or p_rejected is None:
        raise DataError("no prompt: give a 'prompt' column or whole conversations in 'chosen' and 'rejected'")
    if p_chosen != p_rejected:
        raise DataError("'chosen' and 'rejected' do not share a prompt (their turns before the final reply differ)")
    prompt_turns = p_chosen
    system = row.get("system")
    if isinstance(system, str) and system and not (prompt_turns and prompt_turns[0]["role"] == "system"):
        prompt_turns = [{"role": "system", "content": system}, *prompt_turns]
    problem = conversation_problem(prompt_turns + chosen, need_assistant=True)
    if problem:
        raise DataError(problem)
    return "chat", prompt_turns, chosen, rejected


def reply_text(reply) -> str:
    return reply if isinstance(reply, str) else reply[-1]["content"]


class PreferenceTask(Task):
    def __init__(self, cfg):
        super().__init__(cfg)
        self.format = "preference"
        self.chat = False  # pairs rendered with the chat template
        self.stats: dict = {}
        self.generation_rows: dict = {}  # split -> [(prompt text, chosen reply)] for generations at evaluation
        self.user_turn = None

    # -- loading and checks ----------------------------------------------------
    def check(self, ds, key, spec) -> None:
        if key == "predict":
            return self._check_predict(ds, spec)
        for side in SIDES:
            if side not in ds.column_names:
                raise DataError(f"{key}: {spec}: no column '{side}' (found: "
                                f"{', '.join(sorted(set(ds.column_names) - {io.LINE}))})")
        kinds = set()
        for row in io.iter_rows(ds):
            try:
                kind, _, chosen, rejected = to_pair(row)
            except DataError as err:
                raise DataError(f"{where(spec, row)}: {err}") from None
            if chosen == rejected:
                raise DataError(f"{where(spec, row)}: 'chosen' and 'rejected' are identical (a pair must differ)")
            kinds.add(kind)
        if len(kinds) > 1:
            raise DataError(f"{key}: {spec}: rows mix plain-text and conversational pairs; use one kind")
        if kinds == {"chat"}:
            self.chat = True

    def _check_predict(self, ds, spec) -> None:
        if "prompt" not in ds.column_names and "conversations" not in ds.column_names:
            raise DataError(f"--input: {spec}: no column 'prompt' (or 'conversations')")

    def line_column(self) -> str:
        return "prompt"  # `predict --input prompts.txt`: one prompt a line

    def texts_for_tokenizer(self, ds):
        for row in io.iter_rows(ds):
            _, prompt, chosen, rejected = to_pair(row)
            for part in (prompt, chosen, rejected):
                if isinstance(part, str):
                    yield part
                else:
                    yield from (t["content"] for t in part)

    def setup(self, splits, tokenizer) -> None:
        prepare_chat_tokenizer(tokenizer, conversational=self.chat)
        if self.chat:
            from jinja2 import TemplateError

            from .trained_chat import rendered_user_turn

            try:
                self.user_turn = rendered_user_turn(self._renderer(tokenizer).conversation)
            except TemplateError:
                self.user_turn = None
        log.info("preference data: %s pairs", "conversational" if self.chat else "plain-text")

    def save(self, output_dir: str) -> None:
        """sft_format.json (how prompts are rendered, for predict) and REFERENCE_FILE: the model training
        started from, the reference that `trainsuite eval` of this run measures rewards against."""
        import json
        import os

        from .trained_chat import save

        save(output_dir, "preference", self.chat, self.user_turn)
        m = self.cfg.model
        record = {"name_or_path": m.name_or_path, "gguf_file": m.gguf_file, "revision": m.revision}
        with open(os.path.join(output_dir, REFERENCE_FILE), "w", encoding="utf-8") as fh:
            json.dump(record, fh, indent=1)

    def _renderer(self, tokenizer):
        from .chat_render import PrefixRenderer

        cached = getattr(self, "_prefix_renderer", None)
        if cached is None or cached.tokenizer is not tokenizer or cached.chat_template != tokenizer.chat_template:
            cached = PrefixRenderer(tokenizer)
            cached.chat_template = tokenizer.chat_template
            self._prefix_renderer = cached
        return cached

    # -- rendering -------------------------------------------------------------
    def render(self, kind, prompt, chosen, rejected, tokenizer) -> tuple[str, str, str]:
        """(prompt text, chosen reply text, rejected reply text): the prompt rendered once, each reply as
        the text the template adds after it, its end-of-turn token included (trailing whitespace not)."""
        if kind == "text":
            eos = tokenizer.eos_token or ""
            return prompt, chosen + eos, rejected + eos
        renderer = self._renderer(tokenizer)
        texts = []
        for reply in (chosen, rejected):
            render = renderer.conversation(prompt + reply)
            head, whole = render(len(prompt), True), render(len(prompt) + 1)
            if not whole.startswith(head):
                raise DataError("the chat template does not render a conversation as an extension of its prompt "
                                "(with the generation prompt), which chosen and rejected sharing one prompt needs; "
                                "use a template that does (the built-in ChatML one does)")
            texts.append((head, whole[len(head):].rstrip()))
        return texts[0][0], texts[0][1], texts[1][1]

    def _prompt_text(self, row, tokenizer) -> tuple[str, str | None]:
        """A predict row's (prompt text, reference): turns or a string (a user turn when training was on chat)."""
        prompt = row.get("prompt") if row.get("prompt") is not None else row.get("conversations")
        turns = _turns(prompt, "user") if (self.chat or not isinstance(prompt, str)) else None
        ref = row.get("reference") if isinstance(row.get("reference"), str) else None
        chosen = _turns(row.get("chosen"), "assistant") if row.get("chosen") is not None else None
        if ref is None and chosen:
            ref = chosen[-1]["content"]
        if turns is None:
            return prompt, ref
        if turns and turns[-1]["role"] == "assistant":
            turns = turns[:-1]
        if isinstance(row.get("system"), str) and row["system"] and turns[0]["role"] != "system":
            turns = [{"role": "system", "content": row["system"]}, *turns]
        return self._renderer(tokenizer).conversation(turns)(len(turns), True), ref

    # -- encoding --------------------------------------------------------------
    def encode(self, ds, tokenizer, split):
        import datasets

        spec = getattr(self.cfg.data, split, None) if split in ("train", "eval") else "--input"
        key = f"data.{split}" if split in ("train", "eval") else "--input"
        self._prefix_renderer = None
        if split == "predict":
            from .trained_chat import trained_on_chat

            self.chat = self.chat or trained_on_chat(self.cfg, lambda cols: None)
            pairs = [self._prompt_text(r, tokenizer) for r in io.iter_rows(ds)]
            return datasets.Dataset.from_dict({"prompt": [p for p, _ in pairs], "reference": [r for _, r in pairs]})
        p = self.cfg.preference
        columns = {"prompt_ids": [], "chosen_ids": [], "rejected_ids": []}
        gen_rows, counts = [], {"truncated": 0, "dropped_overlong": 0, "dropped_empty_reply": 0}
        lines = {"dropped_overlong": [], "dropped_empty_reply": []}
        for row in io.iter_rows(ds):
            kind, prompt, chosen, rejected = to_pair(row)
            if not reply_text(chosen).strip() or not reply_text(rejected).strip():
                counts["dropped_empty_reply"] += 1
                lines["dropped_empty_reply"].append(row.get(io.LINE, "?"))
                continue
            try:
                prompt_text, chosen_text, rejected_text = self.render(kind, prompt, chosen, rejected, tokenizer)
            except DataError as err:
                raise DataError(f"{where(spec, row)}: {err}") from None
            ids = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in (prompt_text, chosen_text, rejected_text)]
            prompt_ids, cut = truncate_prompt(ids[0], max(len(ids[1]), len(ids[2])), p.max_length, p.max_prompt_length)
            if prompt_ids is None:
                counts["dropped_overlong"] += 1
                lines["dropped_overlong"].append(row.get(io.LINE, "?"))
                continue
            counts["truncated"] += cut
            columns["prompt_ids"].append(prompt_ids)
            columns["chosen_ids"].append(ids[1])
            columns["rejected_ids"].append(ids[2])
            gen_rows.append((prompt_text, reply_text(chosen)))
        self._report(key, spec, len(ds), counts, lines)
        self.stats[split] = {"rows": len(ds), **counts}
        self.generation_rows[split] = gen_rows
        return datasets.Dataset.from_dict(columns)

    def _report(self, key, spec, rows, counts, lines) -> None:
        src = spec if isinstance(spec, str) else "data"
        dropped = counts["dropped_overlong"] + counts["dropped_empty_reply"]
        why = {"dropped_overlong": f"a reply longer than preference.max_length={self.cfg.preference.max_length} "
                                   "allows (replies are never cut)",
               "dropped_empty_reply": "an empty or whitespace-only reply"}
        if dropped == rows:
            raise DataError(f"{key}: {src}: every pair was dropped ({', '.join(f'{counts[k]} with {why[k]}' for k in why if counts[k])}); "
                            "nothing to train on")
        for k, found in lines.items():
            if found:
                at = ", ".join(f"{src}:{line}" for line in found[:5]) + (", ..." if len(found) > 5 else "")
                log.warning("%s: dropped %d of %d pairs with %s: %s", key, len(found), rows, why[k], at)
        if counts["truncated"]:
            log.warning("%s: %d of %d pairs had their prompt cut from the left to fit preference.max_prompt_length=%d "
                        "/ max_length=%d", key, counts["truncated"], rows, self.cfg.preference.max_prompt_length,
                        self.cfg.preference.max_length)


def truncate_prompt(prompt_ids: list, reply_len: int, max_length: int, max_prompt_length: int):
    """(prompt ids kept, 1 if cut else 0), or (None, 0) when the longer reply cannot fit beside one prompt token.
    The prompt loses tokens from its left: first down to max_prompt_length, then as the reply needs."""
    keep = min(len(prompt_ids), max_prompt_length, max_length - reply_len)
    if keep < 1:
        return None, 0
    return prompt_ids[len(prompt_ids) - keep:], int(keep < len(prompt_ids))
