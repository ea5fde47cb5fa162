"""One process or many: PyTorch's own engines under ``torchrun``, nothing home-made.

``torchrun --nproc-per-node N -m titans_memory.cli train ...`` sets ``RANK``, ``WORLD_SIZE`` and
``LOCAL_RANK``; :func:`setup` then joins the process group (NCCL on GPUs, gloo on CPU) and
:func:`wrap` puts the model under DistributedDataParallel (``parallel="ddp"``: every rank holds the
whole model, gradients are averaged) or FSDP2 (``parallel="fsdp"``: ``fully_shard`` on every block
and on the model, parameters, gradients and optimiser state sharded across ranks). Without those
variables everything runs in the one process, unwrapped.

Rank 0 alone prints, logs and writes checkpoints. Checkpoints hold *full* (unsharded) tensors
under the model's own parameter names (:func:`full_model_state`, :func:`full_optimizer_state`),
so a checkpoint written by N ranks loads on 1 and the other way round.
"""

from __future__ import annotations

import contextlib
import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor, nn


@dataclass(frozen=True)
class DistEnv:
    """This process' place in the run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    owns_group: bool = False  # this run joined the process group, so it leaves it at the end

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that prints, logs and writes."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def pick_device(name: str, local_rank: int = 0, *, what: str = "TrainConfig.device") -> torch.device:
    """``auto``: this rank's GPU if CUDA is there, else the CPU; otherwise ``name`` as torch reads it.

    ValueError (naming ``what``) for a name torch does not know or a device this machine lacks.
    """
    if name == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(f"{what} {name!r} is not a device torch knows (auto, cpu, cuda, cuda:0, mps)") from None
    if device.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"{what} {name!r}: this library runs on cpu, cuda or mps, not {device.type}")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"{what} {name!r}: CUDA is not available on this machine")
        if device.index is None:
            device = torch.device(f"cuda:{local_rank}")
        elif device.index >= torch.cuda.device_count():
            raise ValueError(f"{what} {name!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"{what} {name!r}: MPS is not available on this machine")
    return device


def setup(device: str) -> DistEnv:
    """Join the process group when launched by torchrun (``WORLD_SIZE`` > 1); else one process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistEnv(device=pick_device(device))
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    dev = pick_device(device, local_rank)
    owns = not dist.is_initialized()  # a caller that joined the group itself keeps it
    if owns:
        backend = "nccl" if dev.type == "cuda" else "gloo"
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        dist.init_process_group(backend, timeout=datetime.timedelta(minutes=30))
    return DistEnv(rank=rank, world_size=world, local_rank=local_rank, device=dev, owns_group=owns)


def teardown(env: DistEnv) -> None:
    if env.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def wrap(model: nn.Module, loss_module: nn.Module, parallel: str, env: DistEnv) -> nn.Module:
    """The module the training step calls: ``loss_module`` (which holds ``model``), wrapped for ``parallel``.

    DDP: ``find_unused_parameters`` is on, because a step that continues a carried state never
    touches the learned initial memory. FSDP2: each block is one shard group, the rest of the
    model another; :func:`fully_shard` changes ``model`` in place.
    """
    if not env.distributed:
        return loss_module
    if parallel == "ddp":
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(loss_module, device_ids=None, find_unused_parameters=True)
    from torch.distributed.fsdp import fully_shard

    for block in model.blocks:
        fully_shard(block)
    fully_shard(model)
    return loss_module


def no_sync(module: nn.Module, model: nn.Module, sync: bool):
    """Skip the gradient all-reduce on accumulation micro-steps (``sync`` False), for DDP and FSDP2."""
    if sync:
        return contextlib.nullcontext()
    if hasattr(module, "no_sync"):  # DDP
        return module.no_sync()
    if hasattr(model, "set_requires_gradient_sync"):  # FSDP2
        model.set_requires_gradient_sync(False)

        @contextlib.contextmanager
        def resync():
            try:
                yield
            finally:
                model.set_requires_gradient_sync(True)

        return resync()
    return contextlib.nullcontext()


def all_sum(values: Tensor, env: DistEnv) -> Tensor:
    """Sum ``values`` over all ranks (a no-op in one process)."""
    if env.distributed:
        values = values.clone()
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def barrier(env: DistEnv) -> None:
    if env.distributed:
        dist.barrier()


def _options(**kwargs):
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, **kwargs)


def full_model_state(model: nn.Module) -> dict[str, Tensor]:
    """Every weight, unsharded, on the CPU, under the model's parameter names (collective under FSDP)."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict

    return get_model_state_dict(model, options=_options(cpu_offload=True))


def full_optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    """The optimiser's state keyed by parameter names, unsharded, on the CPU (collective under FSDP)."""
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    return get_optimizer_state_dict(model, optimizer, options=_options(cpu_offload=True))


def load_full_state(model: nn.Module, optimizer: torch.optim.Optimizer | None, model_state: dict, optim_state: dict | None) -> None:
    """Load full states (from a checkpoint) into a model that may be sharded differently."""
    from torch.distributed.checkpoint.state_dict import (
        set_model_state_dict,
        set_optimizer_state_dict,
    )

    set_model_state_dict(model, model_state, options=_options())
    if optimizer is not None and optim_state is not None:
        set_optimizer_state_dict(model, optimizer, optim_state, options=_options())
