"""Batch building per task family: padding, label masking, packing (classification.py, seq2seq.py,
sft.py). A collator turns encoded rows into tensors; it knows nothing about files or trainers.

May import: torch, numpy, datasets (pyarrow) and the standard library; nothing of suites/ nor of tasks/.
"""


def round_up(n: int, multiple: int | None) -> int:
    """`n` rounded up to a multiple (GPU kernels prefer padded lengths that are multiples of 8)."""
    return -(-n // multiple) * multiple if multiple else n
