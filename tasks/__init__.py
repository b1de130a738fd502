"""Tasks: how raw data becomes model inputs, and which metrics judge the outputs."""
