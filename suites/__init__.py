"""trainsuite: task-specialized trainers for classification, seq2seq and SFT."""

__version__ = "0.1.0"
