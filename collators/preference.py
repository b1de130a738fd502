"""Preference batches: each pair's prompt + chosen and prompt + rejected, in one padded batch.

For pairs (P1, C1, R1) and (P2, C2, R2) the batch is 2 x pairs rows, the chosen rows first:

    input_ids   [P1 C1 . .]     labels  [-100.. C1 -100]     (-100: prompt and padding)
                [P2 C2 C2 .]            [-100.. C2 C2 -100]
                [P1 R1 R1 .]            [-100.. R1 R1 -100]
                [P2 R2 . . ]            [-100.. R2 -100]

so both replies of a pair follow the same prompt tokens, and the log-probabilities summed under the
labels are those of the reply tokens alone (its end-of-turn token included). Reference log-probs
computed before training (preference.precompute_ref) ride along as two float columns.
"""

from __future__ import annotations

import torch

from . import round_up

IGNORE = -100
REF_COLUMNS = ("ref_chosen_logps", "ref_rejected_logps")


class PreferenceCollator:
    def __init__(self, pad_token_id: int, pad_to_multiple_of: int | None = None):
        self.pad_token_id = pad_token_id
        self.multiple = pad_to_multiple_of

    def __call__(self, pairs: list[dict]) -> dict:
        rows = [(p["prompt_ids"], p[side]) for side in ("chosen_ids", "rejected_ids") for p in pairs]
        width = round_up(max(len(a) + len(b) for a, b in rows), self.multiple)
        ids = torch.full((len(rows), width), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, (prompt, reply) in enumerate(rows):
            n, m = len(prompt), len(reply)
            ids[i, :n + m] = torch.as_tensor(list(prompt) + list(reply))
            labels[i, n:n + m] = torch.as_tensor(list(reply))
            mask[i, :n + m] = 1
        batch = {"input_ids": ids, "attention_mask": mask, "labels": labels}
        for col in REF_COLUMNS:
            if col in pairs[0]:
                batch[col] = torch.tensor([p[col] for p in pairs], dtype=torch.float32)
        return batch
