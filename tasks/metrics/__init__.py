"""Metrics that run offline (scikit-learn, scipy, sacrebleu, rouge-score, numpy)."""
