"""Process-group helpers for torchrun.

Under ``torchrun`` the environment holds RANK / WORLD_SIZE / LOCAL_RANK; the
trainer calls :func:`init_distributed` which creates the default process group
(NCCL for CUDA, gloo otherwise) unless the caller already did. Outside
torchrun everything here degrades to single-process no-ops.
"""

from __future__ import annotations

import atexit
import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def is_main_process() -> bool:
    """False on every rank but 0 of an initialised process group (a recipe under torchrun, after
    its Trainer joined the group): the ranks hold the same results, so one writes them."""
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def init_distributed(device: torch.device) -> DistInfo:
    """Join (or create) the default process group when running under torchrun."""
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))
    if not launched_by_torchrun() or int(os.environ["WORLD_SIZE"]) <= 1:
        return DistInfo()
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if device.type == "cuda":
        torch.cuda.set_device(device)
        dist.init_process_group(backend="nccl", device_id=device)
    else:
        dist.init_process_group(backend="gloo")
    atexit.register(_destroy)  # we created the group, so we tear it down at exit
    return DistInfo(dist.get_rank(), dist.get_world_size(), local_rank)


def _destroy() -> None:
    """Tear the group down once every rank has reached exit. A rank that tore its gloo group down
    while another was still writing its files could abort in gloo's destructor ("terminate called
    without an active exception", seen under torchrun on CPU), so the ranks meet first; the
    meeting is a ``monitored_barrier`` with a timeout, so a rank that died cannot hang the rest."""
    if not dist.is_initialized():
        return
    if dist.get_backend() == "gloo":
        try:
            dist.monitored_barrier(timeout=timedelta(seconds=120))
        except RuntimeError:
            pass  # a peer is gone: nothing to wait for, tear down anyway
    dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def all_reduce_mean(tensor: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Mean of ``tensor`` over ranks (returns a new tensor; NaN on any rank propagates)."""
    if not info.enabled:
        return tensor
    tensor = tensor.detach().clone()
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor / info.world_size


def all_gather_objects(obj, info: DistInfo) -> list:
    """Gather one picklable object per rank (used only off the hot path)."""
    if not info.enabled:
        return [obj]
    out = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj, info: DistInfo, src: int = 0):
    if not info.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]
