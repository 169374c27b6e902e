"""Data parallelism under `torchrun --nproc_per_node N` (gloo on CPU, nccl on CUDA).

Each rank holds a full copy of the model and its own slice of every global batch; DDP all-reduces
(averages) the gradients so the copies stay identical. Only rank 0 writes the run folder.

Outside torchrun everything here is a no-op with world size 1, so the stages call it unconditionally.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from core import cpu


@dataclass
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


class DistributedError(ValueError):
    pass


def init(device_type: str = "cpu") -> Dist:
    """Join the process group if torchrun started us (WORLD_SIZE > 1); idempotent."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        # On CUDA the gradients go through nccl, while the small metric reductions and config checks
        # (all_reduce_mean(s), all_gather_object) use CPU tensors, which nccl cannot carry: one process
        # group with a backend per device type serves both.
        backend = "cpu:gloo,cuda:nccl" if device_type == "cuda" else "gloo"
        if device_type == "cuda":
            torch.cuda.set_device(local)  # before the group exists, so nccl binds each rank to its own GPU
        dist.init_process_group(backend=backend)
    if dist.get_world_size() != world:
        raise DistributedError(f"process group has {dist.get_world_size()} ranks but WORLD_SIZE={world}")
    return Dist(rank=rank, world_size=world, local_rank=local)


def rank_device(device: torch.device, d: Dist) -> torch.device:
    """Under DDP on CUDA each rank drives its own GPU."""
    if d.enabled and device.type == "cuda":
        return torch.device("cuda", d.local_rank)
    return device


def check_divisible(batch: int, d: Dist, what: str = "batch size") -> int:
    """Per-rank share of a global batch; a world size that does not divide it is an error before training."""
    if batch % d.world_size:
        raise DistributedError(f"{what} {batch} is not divisible by the world size {d.world_size}; "
                               f"use a multiple of {d.world_size}")
    return batch // d.world_size


def check_same_config(obj, d: Dist) -> None:
    """All ranks must run the same config; a mismatch (e.g. different flags per rank) fails at once."""
    if not d.enabled:
        return
    gathered = [None] * d.world_size
    dist.all_gather_object(gathered, obj)
    if any(g != gathered[0] for g in gathered):
        raise DistributedError("ranks were started with different configs; start all ranks with the same flags")


def broadcast_object(obj, d: Dist):
    """Rank 0's value on every rank (e.g. the live knobs from control.json)."""
    if not d.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_reduce_sum(t: torch.Tensor, d: Dist) -> torch.Tensor:
    if d.enabled:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def all_reduce_mean(value: float, d: Dist) -> float:
    if not d.enabled:
        return value
    t = torch.tensor([float(value)], dtype=torch.float64)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return float(t.item()) / d.world_size


def wrap(model: torch.nn.Module, d: Dist) -> torch.nn.Module:
    """DDP-wrap a model for training (identity outside torchrun)."""
    if not d.enabled:
        return model
    from torch.nn.parallel import DistributedDataParallel as DDP

    device_ids = [d.local_rank] if next(model.parameters()).is_cuda else None
    return DDP(model, device_ids=device_ids)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return getattr(model, "module", model)


def shutdown(d: Dist) -> None:
    if d.enabled and dist.is_initialized():
        dist.destroy_process_group()


def follow(steps, d: Dist) -> int:
    """What a rank > 0 does with a stage: run its generator (made with run=None) to the end, training its
    share and joining every collective, then leave the process group. Rank 0 alone owns the run folder.
    Returns the process exit status (0)."""
    for _ in steps:
        pass
    shutdown(d)
    return 0


def all_reduce_means(values: dict, d: Dist) -> dict:
    """{name: float} averaged over ranks in ONE collective (a metrics row costs one all-reduce, not twenty)."""
    if not d.enabled:
        return values
    keys = list(values)
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return {k: float(v) / d.world_size for k, v in zip(keys, t.tolist())}


def all_reduce_grads(params, d: Dist, flag: torch.Tensor | None = None) -> torch.Tensor | None:
    """Average the gradients of `params` over ranks, in place, with one flat all-reduce; returns the sum
    over ranks of the 0-d tensor `flag` (still a tensor: reading it is the caller's one host sync).

    For models we drive through their submodules (core.gpt2_lean calls model.transformer directly, so a DDP
    wrapper's forward never runs and its hooks could not be trusted); after this every rank holds the same
    gradients, so gradient clipping and the optimizer step are identical everywhere. A parameter without a
    gradient on this rank counts as zeros (the ranks' lists must line up).

    `flag` rides along in the same buffer: a rank whose loss is NaN sets it, and every rank learns it from
    the return value and stops together. Raising on that rank alone would leave the others waiting forever
    in this collective."""
    if not d.enabled:
        return flag
    params = list(params)
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    extra = params[0].grad.new_zeros(1) if flag is None else flag.reshape(1).to(params[0].grad.dtype)
    flat = torch.cat([p.grad.reshape(-1) for p in params] + [extra])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flags = flat[-1]
    flat = flat[:-1] / d.world_size
    offset = 0
    for p in params:
        n = p.grad.numel()
        p.grad.copy_(flat[offset:offset + n].view_as(p.grad))
        offset += n
    return flags


def setup(cfg, what: str = "batch size") -> tuple[torch.device, Dist, int]:
    """What every training stage does first: validate its config, seed, set CPU threads, pick the device,
    join torchrun's process group when there is one, and check that the world size divides
    `cfg.batch_size` and that all ranks run the same config. Returns (device, dist, per-rank batch)."""
    from core.config import resolve_device, seed_everything, to_dict

    cfg.validate()
    seed_everything(cfg.seed)
    cpu.setup(cfg.threads)  # threads, and a heap that keeps freed memory for the next step
    device = resolve_device(cfg.device)
    d = init(device.type)
    device = rank_device(device, d)
    per_rank = check_divisible(cfg.batch_size, d, what)
    check_same_config(to_dict(cfg), d)
    return device, d, per_rank
