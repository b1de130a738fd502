"""Evaluation that sums per-row quantities (SFT's tokens, preference pairs) on each process and adds
the sums up, so that the result depends neither on batching nor on the number of processes."""

from __future__ import annotations

import torch

from .distributed import model_is_sharded


class SummedEvaluation:
    """Mixin for a Trainer subclass; its evaluation_loop runs `eval_forwards` and `sum_over_processes`."""

    def get_eval_dataloader(self, eval_dataset=None):
        # accelerate's sampler padding (rows repeated so all processes get equal batches) would count
        # some rows twice in the sums
        config = self.accelerator.dataloader_config
        even, config.even_batches = config.even_batches, False
        try:
            return super().get_eval_dataloader(eval_dataset)
        finally:
            config.even_batches = even

    def eval_forwards(self, dataloader, forward):
        """Yield (inputs, forward(inputs)) for each batch of this process, without gradients.

        Sharded weights make every forward a collective: the processes compare their batch counts before
        any forward (compared after, they would wait on each other in different collectives), and the ones
        with fewer batches, or none, then run the same forward on a real row until all have done as many."""
        sharded = model_is_sharded(self.args)
        most = int(self.accelerator.reduce(torch.tensor(len(dataloader), device=self.args.device), "max")) \
            if sharded else 0
        first, batches = None, 0
        for inputs in dataloader:
            inputs = self._prepare_inputs(inputs)
            first, batches = first or inputs, batches + 1
            with torch.no_grad(), self.compute_loss_context_manager():
                out = forward(inputs)
            yield inputs, out
        if sharded:
            if first is None and most > 0:
                first = self._prepare_inputs(self.data_collator([dataloader.dataset[0]]))
            for _ in range(most - batches):
                with torch.no_grad(), self.compute_loss_context_manager():
                    forward(first)

    def sum_over_processes(self, sums: torch.Tensor) -> torch.Tensor:
        return self.accelerator.reduce(sums, "sum") if self.accelerator.num_processes > 1 else sums
