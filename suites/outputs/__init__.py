"""What a run leaves besides its model: report.py (report.html, one offline page; comparison of runs),
figures.py (its PNG figures) and tracking.py (TensorBoard / MLflow through transformers' integrations).

May import: suites.errors, suites.config, suites.callbacks, tasks.metrics; nothing of the trainers or
the run layer.
"""
