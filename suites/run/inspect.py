"""`trainsuite inspect CONFIG [--rows N]`: the first N prepared training examples as the model sees them,
and counts over the data, before any training. Only the config, the data and the tokenizer are read (a
tokenizer trained from data is trained, or taken from the prepared-data cache); no model weights. The
examples come from the task's own `encode`, the code a run trains on; tasks/preview.py renders them.
"""

from __future__ import annotations

PREVIEW_SPLIT = "train"


def inspect(cfg, rows: int = 3, color: bool = False) -> str:
    """The report as text: `rows` examples of the training split, then counts per split."""
    from ..modeling import load_tokenizer

    task_cls, special = task_and_special_tokens(cfg)
    task = task_cls(cfg)
    splits = task.load("train")
    tokenizer = load_tokenizer(cfg, texts=lambda: task.texts_for_tokenizer(splits["train"]),
                               special=special, task=task, train_rows=splits.get("train"))
    task.setup(splits, tokenizer)
    encoded = {name: task.encode(ds, tokenizer, name) for name, ds in splits.items()}
    name = cfg.tokenizer.name_or_path or cfg.model.name_or_path or "trained from the training data"
    out = [f"task {cfg.task}; tokenizer: {name} ({len(tokenizer):,} tokens)"]
    show = {"sft": _sft_examples, "seq2seq": _seq2seq_examples,
            "preference": _preference_examples}.get(cfg.task, _classification_examples)
    out += show(cfg, task, tokenizer, splits, encoded, max(0, rows), color)
    out.append("")
    out += _counts(cfg, task, tokenizer, splits, encoded)
    return "\n".join(out) + "\n"


def task_and_special_tokens(cfg):
    """The family's task class and the special tokens of a tokenizer trained from data, as suites/family.py's
    families name them, without importing the trainers (transformers.Trainer: most of a command's start-up
    time); tests/test_inspect.py checks that they are the families' own."""
    from tasks import tokenizer as special

    if cfg.task == "sft":
        from tasks.instruction import InstructionTask

        return InstructionTask, special.CHAT_LIKE
    if cfg.task == "preference":
        from tasks.preference import PreferenceTask

        return PreferenceTask, special.CHAT_LIKE
    if cfg.task == "seq2seq":
        from tasks.seq2seq import Seq2SeqTask

        from ..config.model_type import PAD_STARTS

        model_type = (cfg.model.from_config or {}).get("model_type")
        return Seq2SeqTask, special.T5_LIKE if model_type in PAD_STARTS or model_type is None else special.BART_LIKE
    from tasks.classification import ClassificationTask

    return ClassificationTask, special.BERT_LIKE


def _sft_examples(cfg, task, tokenizer, splits, encoded, rows, color):
    from tasks import preview

    legend = ("trained tokens in green, the others dim" if color else
              f"trained tokens between {preview.OPEN} and {preview.CLOSE}")
    out = [f"data format {task.format}, loss on {task.loss_on}; {legend}"]
    ds = encoded[PREVIEW_SPLIT]
    for i in range(min(rows, len(ds))):
        ids, labels = ds[i]["input_ids"], ds[i]["labels"]
        trained = sum(1 for x in labels if x != preview.IGNORE)
        out += [f"--- {PREVIEW_SPLIT} example {i + 1}: {len(ids)} tokens, {trained} trained",
                preview.marked(tokenizer, ids, labels, color)]
    return out


def _preference_examples(cfg, task, tokenizer, splits, encoded, rows, color):
    """Each pair as the model sees it: the shared prompt tokens once, then each reply (all of it trained)."""
    from tasks import preview

    legend = ("trained tokens in green, the others dim" if color else
              f"trained tokens between {preview.OPEN} and {preview.CLOSE}")
    out = [f"{'conversational' if task.chat else 'plain-text'} pairs, loss {cfg.preference.loss}; the prompt is "
           f"shared by both replies; {legend}"]
    ds = encoded[PREVIEW_SPLIT]
    for i in range(min(rows, len(ds))):
        prompt = ds[i]["prompt_ids"]
        out.append(f"--- {PREVIEW_SPLIT} pair {i + 1}: prompt {len(prompt)} tokens")
        for side in ("chosen", "rejected"):
            reply = ds[i][f"{side}_ids"]
            ids = prompt + reply
            out += [f"{side} ({len(reply)} reply tokens):",
                    preview.marked(tokenizer, ids, [preview.IGNORE] * len(prompt) + reply, color)]
    return out


def _seq2seq_examples(cfg, task, tokenizer, splits, encoded, rows, color):
    from tasks import preview

    raw, ds, out = splits[PREVIEW_SPLIT], encoded[PREVIEW_SPLIT], []
    for i in range(min(rows, len(ds))):
        src, tgt = ds[i]["input_ids"], ds[i]["labels"]
        out += [f"--- {PREVIEW_SPLIT} pair {i + 1} (line {raw[i].get('_line', '?')})",
                f"source: {raw[i]['source']}", f"  -> {len(src)} tokens: {preview.pieces(tokenizer, src)}",
                f"target: {raw[i]['target']}", f"  -> {len(tgt)} tokens: {preview.pieces(tokenizer, tgt)}"]
    return out


def _classification_examples(cfg, task, tokenizer, splits, encoded, rows, color):
    from tasks import preview

    d, raw, ds, out = cfg.data, splits[PREVIEW_SPLIT], encoded[PREVIEW_SPLIT], []
    for i in range(min(rows, len(ds))):
        ids, label = ds[i]["input_ids"], ds[i]["labels"]
        named = f" ({task.labels[label]})" if isinstance(label, int) and label < len(task.labels) else ""
        out += [f"--- {PREVIEW_SPLIT} row {i + 1} (line {raw[i].get('_line', '?')})", f"text: {raw[i][d.text_column]}"]
        if d.text_pair_column:
            out.append(f"pair: {raw[i][d.text_pair_column]}")
        out += [f"  -> {len(ids)} tokens: {preview.pieces(tokenizer, ids)}",
                f"label: {raw[i][d.label_column]!r} -> {label}{named}"]
    return out


def _counts(cfg, task, tokenizer, splits, encoded):
    from tasks import io, preview

    out = []
    for split, ds in encoded.items():
        stats = task.stats.get(split, {})
        if cfg.task == "sft":
            s = cfg.sft
            counts = preview.sft_counts(ds, set(_end_of_turn(tokenizer)))
            out += [f"{split}: {stats.get('rows', len(splits[split])):,} rows -> {len(ds):,} examples; "
                    f"longer than sft.max_length={s.max_length}: {stats.get('truncated', 0):,} truncated, "
                    f"{stats.get('dropped_overlong', 0) + stats.get('dropped_no_trained_token_after_truncation', 0):,} "
                    f"dropped (sft.overlong={s.overlong})",
                    f"  trained tokens: {preview.share(counts['trained_tokens'], counts['tokens'])}",
                    f"  rows whose end-of-turn token is not trained: {counts['rows_end_of_turn_not_trained']:,}"]
        elif cfg.task == "preference":
            p = cfg.preference
            out.append(f"{split}: {stats.get('rows', len(ds)):,} pairs -> {len(ds):,}; prompt cut from the left "
                       f"(max_prompt_length={p.max_prompt_length}, max_length={p.max_length}): "
                       f"{stats.get('truncated', 0):,}; dropped: {stats.get('dropped_overlong', 0):,} with a reply "
                       f"too long, {stats.get('dropped_empty_reply', 0):,} with an empty reply")
        elif cfg.task == "seq2seq":
            out.append(f"{split}: {stats.get('rows', len(ds)):,} pairs, {stats.get('skipped_empty', 0):,} skipped "
                       f"(empty source or target) -> {len(ds):,}; truncated: {stats.get('truncated_sources', 0):,} "
                       f"sources (data.max_source_length={cfg.data.max_source_length}), "
                       f"{stats.get('truncated_targets', 0):,} targets (data.max_target_length="
                       f"{cfg.data.max_target_length})")
        else:
            limit = cfg.data.max_length
            at_limit = sum(1 for ids in io.values(ds, "input_ids") if limit and len(ids) >= limit)
            out.append(f"{split}: {len(ds):,} rows, {len(task.labels) or 'no'} label names; at data.max_length="
                       f"{limit}: {at_limit:,} (cut there, or exactly that long)")
    if cfg.task == "sft" and task.chat:
        out.append(_system_prompt_line(task, tokenizer, splits[PREVIEW_SPLIT]))
    return out


def _end_of_turn(tokenizer):
    from tasks.instruction import end_of_turn_ids

    return end_of_turn_ids(tokenizer)


def _system_prompt_line(task, tokenizer, raw) -> str:
    from tasks import io, preview
    from tasks.instruction import to_messages

    inserted = preview.default_system_prompt(tokenizer)
    if inserted is None:
        return "default system prompt: none (the chat template adds no system turn)"
    convs = [to_messages(row, task.format) for row in io.iter_rows(raw)]
    without = sum(1 for m in convs if m and m[0].get("role") != "system")
    return (f"default system prompt: inserted into {preview.share(without, len(convs))} {PREVIEW_SPLIT} "
            f"conversations (those without a system turn): {inserted!r}")
