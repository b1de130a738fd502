"""The `sweep.space` block: dotted config key -> how to draw its value. Every range is checked before any
trial starts, by loading the config with each end (each choice) through the ordinary config checks.

    train.learning_rate: {log_uniform: [1.0e-5, 1.0e-3]}
    train.warmup_steps: {uniform: [0.0, 0.1]}
    peft.r: {choice: [8, 16, 32]}
    train.per_device_train_batch_size: {int: [8, 32], step: 8}
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ..errors import UserError

KINDS = ("log_uniform", "uniform", "choice", "int")


@dataclass(frozen=True)
class Param:
    key: str  # dotted config key
    kind: str
    low: Any = None
    high: Any = None
    step: Any = None
    choices: tuple = ()

    def corners(self) -> list:
        """The values a trial may get at the edges: both ends, or every choice."""
        return list(self.choices) if self.kind == "choice" else [self.low, self.high]

    def suggest(self, trial):
        if self.kind == "choice":
            return trial.suggest_categorical(self.key, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(self.key, self.low, self.high, step=self.step or 1)
        return trial.suggest_float(self.key, self.low, self.high, log=self.kind == "log_uniform")


def override(key: str, value) -> str:
    """`key=value` as the config's override parser reads it back (JSON is YAML)."""
    return f"{key}={json.dumps(value)}"


def parse(space) -> list[Param]:
    if not isinstance(space, dict) or not space:
        raise UserError("config: 'sweep.space' must map at least one dotted config key to a range, "
                        "e.g. train.learning_rate: {log_uniform: [1.0e-5, 1.0e-3]}")
    return [_param(str(key), spec) for key, spec in space.items()]


def _param(key: str, spec) -> Param:
    where = f"config: 'sweep.space.{key}'"
    if key == "sweep" or key.startswith("sweep.") or key in ("output_dir", "seed"):
        raise UserError(f"{where}: this key is not tunable (the sweep sets it per trial)" if key != "seed"
                        else f"{where}: the seed is not tuned; set sweep.seed for the sampler")
    if not isinstance(spec, dict):
        raise UserError(f"{where} must be a mapping such as {{uniform: [0.0, 0.1]}}, got {spec!r}")
    kinds = [k for k in spec if k in KINDS]
    extra = [k for k in spec if k not in KINDS and k != "step"]
    if len(kinds) != 1 or extra:
        raise UserError(f"{where}: expected exactly one of {', '.join(KINDS)} (plus step for int), "
                        f"got {', '.join(map(str, spec)) or 'nothing'}")
    kind = kinds[0]
    if "step" in spec and kind != "int":
        raise UserError(f"{where}: step goes with int only")
    value = spec[kind]
    if kind == "choice":
        if not isinstance(value, list) or not value:
            raise UserError(f"{where}: choice must be a non-empty list, got {value!r}")
        bad = [v for v in value if not isinstance(v, (str, int, float, bool)) and v is not None]
        if bad:
            raise UserError(f"{where}: a choice must be a number, text, true/false or null, got {bad[0]!r}")
        return Param(key, kind, choices=tuple(value))
    if not isinstance(value, list) or len(value) != 2:
        raise UserError(f"{where}: {kind} takes [low, high], got {value!r}")
    low, high = value
    number = int if kind == "int" else (int, float)
    for v in (low, high):
        if isinstance(v, bool) or not isinstance(v, number):
            raise UserError(f"{where}: {kind} bounds must be {'integers' if kind == 'int' else 'numbers'}, "
                            f"got {v!r}")
    if low > high:
        raise UserError(f"{where}: low {low!r} > high {high!r}")
    if kind == "log_uniform" and low <= 0:
        raise UserError(f"{where}: log_uniform needs low > 0, got {low!r}")
    step = spec.get("step")
    if kind == "int":
        if step is not None and (isinstance(step, bool) or not isinstance(step, int) or step < 1):
            raise UserError(f"{where}: step must be a positive integer, got {step!r}")
        if step and (high - low) % step:
            raise UserError(f"{where}: high - low ({high - low}) is not a multiple of step {step}")
        return Param(key, kind, low, high, step or 1)
    return Param(key, kind, float(low), float(high))


def check(config_path: str, overrides: list[str], params: list[Param]) -> None:
    """Each end (each choice) of every range loaded through config.load: an unknown key or a value the
    key refuses is the same one-line error a single run gets, naming the sweep key, before any trial."""
    from .. import config
    from ..errors import MISTAKES

    for p in params:
        for value in p.corners():
            try:
                config.load(config_path, [*overrides, override(p.key, value)])
            except MISTAKES as exc:
                raise UserError(f"config: 'sweep.space.{p.key}' value {value!r}: {exc}") from None
