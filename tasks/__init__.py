"""Tasks: how raw data becomes model inputs, and which metrics judge the outputs. io.py reads files
(csv, tsv, json, jsonl, parquet, text, aligned text pairs, hub datasets) with errors naming file, line
and column; one module per task family (classification.py, seq2seq.py, instruction.py) checks and
encodes its rows; tokenizer.py trains a tokenizer from data; metrics/ computes every score offline.
A mistake in the data is a tasks.errors.DataError.

May import: the libraries (datasets, tokenizers, numpy, scikit-learn, sacrebleu ...); nothing of
suites/ (it knows no trainer) nor of collators/.
"""
