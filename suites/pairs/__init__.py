"""The preference family's engine (suites/preference.py): pair losses (losses.py), the sequence
log-probabilities of a pair batch (logps.py) and reference log-probs computed once and cached (reference.py)."""
