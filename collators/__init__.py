"""Batch building per task family: padding, label masking, packing."""
