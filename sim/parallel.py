"""Communication of parallel layouts, from :mod:`hwmodels.collectives`.

Tensor parallelism (Megatron-LM, Shoeybi et al., arXiv:1909.08053): two
all-reduces per layer of the layer's output activations (after the attention
output projection and after the MLP down projection), each of
``new_tokens x hidden x activation bytes``, on the node the device usually sits
in (NVSwitch for SXM parts, PCIe otherwise; :func:`hwmodels.device_node`).
"""

from __future__ import annotations

import numpy as np

import hwmodels as hw
from sim.model import ModelConfig
from sim.precision import Precision
from sim.step import Step


def tensor_parallel_comms(model: ModelConfig, device: hw.Device, step: Step, precision: Precision, tp: int):
    from sim.cost import CommTime

    if tp == 1:
        return []
    node = hw.device_node(device, tp)
    message = np.asarray(step.new_tokens * model.hidden_size * precision.activation_bytes, dtype=float)
    cost = hw.collective_time("all_reduce", message.ravel(), node)
    time_s = np.asarray(cost.time_s).reshape(message.shape)
    return [
        CommTime(
            name="tp_all_reduce",
            repeat=2 * model.num_layers,
            message_bytes=message,
            time_s=time_s,
            explain=cost.explain(0),
        )
    ]


def pipeline_p2p(model: ModelConfig, device: hw.Device, step: Step, precision: Precision):
    """One stage boundary: the micro-batch's activations sent to the next stage (one-way send/recv)."""
    from sim.cost import CommTime

    node = hw.device_node(device, 2)
    message = np.asarray(step.new_tokens * model.hidden_size * precision.activation_bytes, dtype=float)
    cost = hw.collective_time("sendrecv", message.ravel(), node)
    return CommTime("pp_send_recv", 1, message, np.asarray(cost.time_s).reshape(message.shape), cost.explain(0))
