"""Secrets never reach what a run writes: run_config.yaml, report.html, results, the MLflow/TensorBoard
params, training_args.bin, the lock and marker files, and the log.

Only copies are redacted: the config the run works with keeps its real values (train.hub_token still
reaches push_to_hub), and nothing reads run_config.yaml back to run from it.

The rule is deliberate, not "anything with token in its name": a key is secret when its name holds
password / passwd / secret / credential / api_key / access_key / private_key, is `token`, or ends in
_token, _key or _secret, except the names of vocabulary tokens (pad_token, eos_token, forced_bos_token ...).
max_new_tokens, add_special_tokens or pad_token_id do not end in _token and are never secret.
tests/test_security_redact.py runs the rule over every key of the config schema and of
transformers' and trl's training arguments. Environment variables follow the same rule (HF_TOKEN,
WANDB_API_KEY, MLFLOW_TRACKING_PASSWORD, AWS_SECRET_ACCESS_KEY ...), and the password of a URL
(https://user:pass@host) becomes https://user:***@host wherever it appears.
"""

from __future__ import annotations

import logging
import os
import re

PLACEHOLDER = "***"

_WORDS = ("password", "passwd", "secret", "credential", "api_key", "apikey", "access_key", "private_key")
_NAMES = {"token", "auth_token", "access_token", "api_token"}
# names ending in _token that are a vocabulary token of a tokenizer or a generation setting
_VOCAB_TOKEN = re.compile(r"(^|_)(pad|eos|bos|unk|sep|cls|mask|start|end|special|decoder_start|image|video|"
                          r"audio|boi|eoi|eot|eom|think|tool|response|instruction)_token$")
_URL_PASSWORD = re.compile(r"\b([a-z][a-z0-9+.-]*://[^\s/:@'\"]+):([^\s/@'\"]+)@", re.I)
_MIN_SECRET = 4  # shorter values are not searched for in log lines: "1" would mask every digit


def is_secret_key(name) -> bool:
    """True for a config key or an environment variable whose value is a credential."""
    key = str(name).lower().replace("-", "_").rsplit(".", 1)[-1]
    if key in _NAMES or any(w in key for w in _WORDS):
        return True
    if key.endswith("_token"):
        return not _VOCAB_TOKEN.search(key)
    return key.endswith(("_key", "_secret"))


def _has_value(value) -> bool:
    # null, "" and true/false say whether a secret is set, not what it is: they stay readable
    return value not in (None, "") and not isinstance(value, bool)


def redact_url(text: str) -> str:
    """https://user:pass@host -> https://user:***@host, anywhere in text."""
    return _URL_PASSWORD.sub(rf"\1:{PLACEHOLDER}@", text)


def redact(obj, key=None, numbers: bool = True):
    """A copy of a config dict (lists, nested dicts) with secret values replaced by the placeholder.
    numbers=False keeps numbers as they are (results: a metric is no secret, whatever a class is named)."""
    if key is not None and is_secret_key(key) and _has_value(obj) and (numbers or isinstance(obj, str)):
        return PLACEHOLDER
    if isinstance(obj, dict):
        return {k: redact(v, k, numbers) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(redact(v, None, numbers) for v in obj)
    if isinstance(obj, str):
        return redact_url(obj)
    return obj


def redact_argv(argv) -> list:
    """A command line for the lock and marker files: `train.hub_token=hf_x` -> `train.hub_token=***`."""
    out = []
    for arg in argv:
        key, eq, value = str(arg).partition("=")
        out.append(f"{key}={PLACEHOLDER}" if eq and is_secret_key(key) and value else redact_url(str(arg)))
    return out


_YAML_LINE = re.compile(r"^(\s*(?:-\s+)?)([^\s:#'\"][^:#]*?):([ \t]+)(\S.*?)\s*$")


def redact_yaml_text(text: str) -> str:
    """A run_config.yaml's text with secret values replaced, line by line (the report shows the text
    of runs written before redaction too)."""
    lines = []
    for line in text.splitlines():
        m = _YAML_LINE.match(line)
        if m and is_secret_key(m.group(2)) and m.group(4) not in ("null", "~", "''", '""', "true", "false",
                                                                   PLACEHOLDER, f"'{PLACEHOLDER}'"):
            line = f"{m.group(1)}{m.group(2)}:{m.group(3)}'{PLACEHOLDER}'"
        lines.append(redact_url(line))
    return "\n".join(lines) + ("\n" if text.endswith("\n") else "")


# ------------------------------------------------------------------ the log


def secret_values(config: dict | None = None, environ=None) -> set:
    """The secret strings of a config and of the environment, to mask wherever they appear."""
    found = set()

    def walk(obj, key=None):
        if isinstance(obj, dict):
            for k, v in obj.items():
                walk(v, k)
        elif isinstance(obj, (list, tuple)):
            for v in obj:
                walk(v, key)
        elif key is not None and is_secret_key(key) and _has_value(obj):
            found.add(str(obj))

    walk(config or {})
    for name, value in (os.environ if environ is None else environ).items():
        if is_secret_key(name) and value:
            found.add(value)
    return {s for s in found if len(s) >= _MIN_SECRET}


class LogRedactor(logging.Filter):
    """Masks known secret values and URL passwords in every record it sees."""

    def __init__(self):
        super().__init__()
        self.secrets: set = set()

    def scrub(self, text: str) -> str:
        for secret in sorted(self.secrets, key=len, reverse=True):
            text = text.replace(secret, PLACEHOLDER)
        return redact_url(text)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = self.scrub(message)
        if clean != message:
            record.msg, record.args = clean, None
        return True


_redactor = LogRedactor()


def scrub(text: str) -> str:
    """text with the environment's secrets and those install_log_filter learned masked (the last
    `error:` line, which may come before the config is read)."""
    _redactor.secrets |= secret_values()
    return _redactor.scrub(str(text))


def install_log_filter(config: dict | None = None) -> LogRedactor:
    """Mask this config's and the environment's secrets in the log: on the trainsuite logger and on
    the handlers of the root logger and of transformers' logger (records of any library pass there)."""
    _redactor.secrets |= secret_values(config)
    loggers = [logging.getLogger("trainsuite")]
    handlers = logging.getLogger().handlers + logging.getLogger("transformers").handlers
    for target in loggers + handlers:
        if _redactor not in target.filters:
            target.addFilter(_redactor)
    return _redactor
