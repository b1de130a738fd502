"""Prepared examples as text, the way a model sees them (`trainsuite inspect`), and counts over a split.

Everything here reads what a task's `encode` made (token ids and labels), so it shows what a run trains
on, not a second rendering of it. SFT examples are the decoded tokens with the trained ones marked:

    plain (piped)   <|im_start|>user\\nhi<|im_end|>\\n<|im_start|>assistant\\n[[hello<|im_end|>]]\\n
    terminal        the same text, trained tokens green and the others dim (no [[ ]])

`[[` and `]]` enclose each run of trained tokens (those whose label is the token itself).
"""

from __future__ import annotations

from . import io

IGNORE = -100
OPEN, CLOSE = "[[", "]]"
GREEN, DIM, RESET = "\x1b[32m", "\x1b[2m", "\x1b[0m"


def token_runs(labels) -> list[tuple[int, int, bool]]:
    """(start, end, trained) runs of consecutive tokens with the same trained state."""
    runs = []
    for i, lab in enumerate(labels):
        on = lab != IGNORE
        if runs and runs[-1][2] == on:
            runs[-1] = (runs[-1][0], i + 1, on)
        else:
            runs.append((i, i + 1, on))
    return runs


def marked(tokenizer, ids, labels, color: bool) -> str:
    """The decoded tokens (special tokens kept), trained runs in [[ ]] or, with `color`, green."""
    out = []
    for start, end, on in token_runs(labels):
        text = tokenizer.decode(ids[start:end], skip_special_tokens=False, clean_up_tokenization_spaces=False)
        if color:
            out.append(f"{GREEN if on else DIM}{text}{RESET}")
        else:
            out.append(f"{OPEN}{text}{CLOSE}" if on else text)
    return "".join(out)


def pieces(tokenizer, ids) -> str:
    """Tokens one by one, separated by `|` (a token's own spaces kept)."""
    return "|".join(tokenizer.decode([t], skip_special_tokens=False, clean_up_tokenization_spaces=False)
                    for t in ids)


def default_system_prompt(tokenizer) -> str | None:
    """The system text the chat template writes into a conversation that has no system turn, or None.
    Read off the template: the text a system turn gets before its content and between it and the user
    turn, found around the user turn of a conversation without one, means the template inserts its own."""
    from jinja2 import TemplateError

    user = [{"role": "user", "content": "\x01"}]
    try:
        with_system = tokenizer.apply_chat_template([{"role": "system", "content": "\x02"}, *user], tokenize=False)
        without = tokenizer.apply_chat_template(user, tokenize=False)
    except (TemplateError, ValueError):  # a template that refuses system turns inserts none either
        return None
    head, _, rest = with_system.partition("\x02")
    between = rest.split("\x01", 1)[0]  # the end of the system turn and the start of the user turn
    before_user = without.split("\x01", 1)[0]
    if not head or not before_user.startswith(head) or not before_user.endswith(between) \
            or len(before_user) < len(head) + len(between):
        return None
    return before_user[len(head):len(before_user) - len(between)]


def sft_counts(encoded, end_of_turn: set[int]) -> dict:
    """Tokens, trained tokens, and rows with a trained span that does not end in an end-of-turn token
    (`end_of_turn`: the ids generation stops at) -- a reply the model never learns to end."""
    tokens = trained = unended = 0
    for ids, labels in zip(io.values(encoded, "input_ids"), io.values(encoded, "labels")):
        tokens += len(ids)
        runs = [(s, e) for s, e, on in token_runs(labels) if on]
        trained += sum(e - s for s, e in runs)
        unended += any(ids[e - 1] not in end_of_turn for _, e in runs)
    return {"tokens": tokens, "trained_tokens": trained, "rows_end_of_turn_not_trained": unended}


def share(part: int, whole: int) -> str:
    return f"{part:,} of {whole:,} ({100.0 * part / max(whole, 1):.1f}%)"
