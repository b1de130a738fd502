"""FSDP2 on CPU processes (gloo): how CI runs the sharded path for real without a GPU.

accelerate turns its FSDP plugin on only for GPU-like devices: on CPU processes it keeps the plugin
aside and runs plain DDP, silently (the log said FSDP, the model was never sharded). torch's own
FSDP2 (`fully_shard`) does run on gloo, so while the Trainer builds its Accelerator we let accelerate
take the FSDP branch for CPU processes too, exactly as it does for GPUs: the distributed type
becomes FSDP (in both shared states, as accelerate itself does) and the plugin is kept.
"""

from __future__ import annotations

import contextlib


def wants_cpu_fsdp(args) -> bool:
    return bool(args.fsdp) and bool(args.use_cpu) and args.world_size > 1


@contextlib.contextmanager
def fsdp_on_cpu_processes(args):
    if not wants_cpu_fsdp(args):
        yield
        return
    import accelerate.state as state
    from accelerate.utils import DistributedType

    original = state.AcceleratorState.__init__

    def init(self, *a, fsdp_plugin=None, **kw):
        original(self, *a, fsdp_plugin=fsdp_plugin, **kw)
        if fsdp_plugin is not None and self.distributed_type == DistributedType.MULTI_CPU:
            if self._mixed_precision != "no":
                fsdp_plugin.set_mixed_precision(self._mixed_precision)
            self.fsdp_plugin = fsdp_plugin
            self.distributed_type = DistributedType.FSDP
            state.PartialState._shared_state["distributed_type"] = DistributedType.FSDP

    state.AcceleratorState.__init__ = init
    try:
        yield
    finally:
        state.AcceleratorState.__init__ = original
