"""Batch building per task family: padding, label masking, packing."""


def round_up(n: int, multiple: int | None) -> int:
    """`n` rounded up to a multiple (GPU kernels prefer padded lengths that are multiples of 8)."""
    return -(-n // multiple) * multiple if multiple else n
