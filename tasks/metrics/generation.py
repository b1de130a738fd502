"""Generation metrics, offline: BLEU, chrF, TER (sacrebleu), ROUGE-1/2/L/Lsum (rouge-score),
exact match and mean generated length. Shared by the seq2seq and SFT families."""

from __future__ import annotations

import re

# the keys generation_metrics() returns (all of them by default)
METRIC_NAMES = ("bleu", "chrf", "ter", "rouge1", "rouge2", "rougeL", "rougeLsum", "exact_match", "gen_len")
LOWER_IS_BETTER = ("ter",)

_SENT_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(\[])")


def split_sentences(text: str) -> list[str]:
    """Offline sentence splitting for ROUGE-Lsum (no nltk download): newline- and punctuation-based."""
    parts = []
    for line in text.split("\n"):
        parts.extend(s.strip() for s in _SENT_END.split(line) if s.strip())
    return parts


def bleu_chrf_ter(predictions: list[str], references: list[str]) -> dict:
    import sacrebleu

    refs = [references]
    return {
        "bleu": float(sacrebleu.corpus_bleu(predictions, refs).score),
        "chrf": float(sacrebleu.corpus_chrf(predictions, refs).score),
        "ter": float(sacrebleu.corpus_ter(predictions, refs).score),
    }


def rouge(predictions: list[str], references: list[str]) -> dict:
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL", "rougeLsum"], use_stemmer=True)
    totals = {"rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0, "rougeLsum": 0.0}
    for pred, ref in zip(predictions, references):
        # rougeLsum splits on newlines: put one sentence a line first
        scores = scorer.score("\n".join(split_sentences(ref)), "\n".join(split_sentences(pred)))
        for k in totals:
            totals[k] += scores[k].fmeasure
    n = max(len(predictions), 1)
    return {k: 100.0 * v / n for k, v in totals.items()}


def exact_match(predictions: list[str], references: list[str]) -> float:
    norm = lambda s: " ".join(s.strip().split())  # noqa: E731
    n = max(len(predictions), 1)
    return 100.0 * sum(norm(p) == norm(r) for p, r in zip(predictions, references)) / n


def generation_metrics(predictions: list[str], references: list[str], gen_lengths=None,
                       which=("bleu", "chrf", "ter", "rouge", "exact_match")) -> dict:
    """Flat dict of metrics on detokenized strings. `gen_lengths`: generated token counts."""
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
    out = {}
    if {"bleu", "chrf", "ter"} & set(which):
        out.update({k: v for k, v in bleu_chrf_ter(predictions, references).items() if k in which})
    if "rouge" in which:
        out.update(rouge(predictions, references))
    if "exact_match" in which:
        out["exact_match"] = exact_match(predictions, references)
    if gen_lengths is not None and len(gen_lengths):
        out["gen_len"] = float(sum(gen_lengths) / len(gen_lengths))
    return out
