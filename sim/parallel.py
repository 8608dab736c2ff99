"""Communication of parallel layouts, from :mod:`hwmodels.collectives`.

Tensor parallelism (Megatron-LM, Shoeybi et al., arXiv:1909.08053): two
all-reduces per layer of the layer's output activations (after the attention
output projection and after the MLP down projection), each of
``new_tokens x hidden x activation bytes``, on the node the device usually sits
in (NVSwitch for SXM parts, PCIe otherwise; :func:`hwmodels.device_node`).

Expert parallelism (GShard, Lepikhin et al., arXiv:2006.16668; DeepSpeed-MoE,
Rajbhandari et al., arXiv:2201.05596): the experts of each MoE layer are split
over ``ep`` GPUs (:class:`sim.graph.Sharding`), and every MoE layer moves its
tokens twice, a *dispatch* all-to-all (each token's hidden state to the GPUs of
its ``k`` experts) and a *combine* all-to-all (the ``k`` expert outputs back to
the token's GPU, where they are weighted and summed). The step's tokens are
spread evenly over the EP group before dispatch, ``rows = new_tokens / ep`` per
GPU, so under uniform routing each GPU sends ``rows x k`` rows and receives as
many -- exactly the ``new_tokens x k / ep`` rows the expert GEMMs of
:func:`sim.graph.step_graph` process on each GPU. Each all-to-all's buffer (the
size nccl-tests calls S for all-to-all: a rank's whole send buffer) is

    S = rows x k x hidden x activation bytes,   of which (ep-1)/ep leaves the GPU

and :func:`hwmodels.collective_time` costs it on ``hwmodels.device_node(device, ep)``.
"""

from __future__ import annotations

import numpy as np

import hwmodels as hw
from hwmodels.errors import InvalidValueError
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


def expert_parallel_comms(model: ModelConfig, device: hw.Device, step: Step, precision: Precision, ep: int,
                          topology=None):
    """The dispatch and combine all-to-alls of every MoE layer with ``ep``-way expert parallelism.

    Returns two :class:`sim.cost.CommTime` (``ep_dispatch_all_to_all`` and
    ``ep_combine_all_to_all``, each ``num_layers`` times per step) whose
    ``message_bytes`` is the per-GPU send buffer ``S = new_tokens/ep x k x hidden
    x activation bytes`` (see the module docstring); nothing for ``ep == 1``.
    ``topology`` overrides the default ``hwmodels.device_node(device, ep)`` (e.g. a
    multi-node :func:`hwmodels.topology.cluster`).
    """
    from sim.cost import CommTime

    if isinstance(ep, bool) or not isinstance(ep, (int, np.integer)) or ep < 1:
        raise InvalidValueError(f"ep must be a positive integer, got {ep!r}")
    if ep == 1:
        return []
    experts = getattr(model, "num_experts", 1) or 1
    k = getattr(model, "experts_per_token", 1) or 1
    if experts <= 1:
        raise InvalidValueError(f"{model.name} has no experts: expert parallelism (ep={ep}) needs a mixture-of-experts model")
    if experts % ep:
        raise InvalidValueError(f"{model.name} has {experts} experts, not divisible by EP={ep}")
    node = topology if topology is not None else hw.device_node(device, int(ep))
    rows = np.asarray(step.new_tokens, dtype=float) / ep
    message = rows * k * model.hidden_size * precision.activation_bytes
    cost = hw.collective_time("all_to_all", message.ravel(), node)
    time_s = np.asarray(cost.time_s).reshape(message.shape)
    off_gpu = (ep - 1) / ep
    explain = cost.explain(0) + f"; {off_gpu:.4g} of S leaves each GPU"
    return [
        CommTime("ep_dispatch_all_to_all", model.num_layers, message, time_s, explain),
        CommTime("ep_combine_all_to_all", model.num_layers, message, time_s, explain),
    ]
