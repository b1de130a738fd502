"""Preference losses, one value per pair, from sequence log-probabilities (summed over the reply tokens).

    sigmoid  DPO        -log s(b * ((c - c_ref) - (r - r_ref)))
    robust   rDPO       ((1 - e) * -log s(b * d) - e * -log s(-b * d)) / (1 - 2e),  d as in DPO
    ipo      IPO        ((c - c_ref) / |c| - (r - r_ref) / |r| - 1 / (2b))^2     (per-token log-ratios, as trl)
    simpo    SimPO      -log s(b * (c / |c| - r / |r|) - gamma)                   (no reference)
    orpo     ORPO       -c / |c| - b * log s(log odds(c / |c|) - log odds(r / |r|)),  odds(p) = p / (1 - p)
                        (no reference; the NLL term is each pair's chosen mean, so the loss stays per pair)

s is the logistic function, |c| the token count of the chosen reply. The rewards (for the metrics) are
b * (c - c_ref) for the reference losses and b * c / |c| for the reference-free ones, as trl reports them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

REFERENCE_FREE = ("orpo", "simpo")


@dataclass
class PairLogps:
    chosen: torch.Tensor  # [pairs] summed log-probs of the chosen reply
    rejected: torch.Tensor
    chosen_tokens: torch.Tensor  # [pairs] reply lengths in tokens
    rejected_tokens: torch.Tensor


def _log1mexp(x: torch.Tensor) -> torch.Tensor:
    """log(1 - exp(x)) for x < 0: expm1 near 0, log1p far from it (where 1 - exp(x) rounds to 1 and
    the log would lose all its digits); the switch at -log 2 is where the two errors cross."""
    x = x.clamp(max=-1e-7)
    return torch.where(x > -0.6931471805599453, torch.log(-torch.expm1(x)), torch.log1p(-torch.exp(x)))


def pair_losses(kind: str, policy: PairLogps, ref_chosen=None, ref_rejected=None, beta: float = 0.1,
                label_smoothing: float = 0.0, gamma: float = 0.5):
    """(loss per pair, chosen rewards, rejected rewards)."""
    if kind in REFERENCE_FREE:
        avg_c = policy.chosen / policy.chosen_tokens.clamp(min=1)
        avg_r = policy.rejected / policy.rejected_tokens.clamp(min=1)
        if kind == "simpo":
            losses = -F.logsigmoid(beta * (avg_c - avg_r) - gamma)
        else:
            log_odds = (avg_c - avg_r) - (_log1mexp(avg_c) - _log1mexp(avg_r))
            losses = -avg_c - beta * F.logsigmoid(log_odds)
        return losses, beta * avg_c.detach(), beta * avg_r.detach()
    chosen_ratio, rejected_ratio = policy.chosen - ref_chosen, policy.rejected - ref_rejected
    delta = chosen_ratio - rejected_ratio
    if kind == "sigmoid":
        losses = -F.logsigmoid(beta * delta)
    elif kind == "robust":
        e = label_smoothing
        losses = (-(1 - e) * F.logsigmoid(beta * delta) + e * F.logsigmoid(-beta * delta)) / (1 - 2 * e)
    elif kind == "ipo":
        per_token = chosen_ratio / policy.chosen_tokens.clamp(min=1) - rejected_ratio / policy.rejected_tokens.clamp(min=1)
        losses = (per_token - 1 / (2 * beta)) ** 2
    else:
        raise ValueError(f"unknown preference loss {kind!r}")
    return losses, beta * chosen_ratio.detach(), beta * rejected_ratio.detach()
