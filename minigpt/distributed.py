"""Data-parallel training under torchrun: one process per CPU group or GPU, the global batch split between them.

    torchrun --nproc_per_node 2 train_pretrain.py --steps 3      # 2 processes on CPU (gloo)
    torchrun --nproc_per_node 8 train_pretrain.py                # 8 GPUs on one machine (NCCL)

torchrun starts N copies of the script and tells each its RANK, LOCAL_RANK and
WORLD_SIZE through the environment. Every process builds the same model from
the same seed and draws the same global batch of `--batch-size` windows from
the same seeded generator; process k keeps the k-th of N equal slices
(`local_share`). DistributedDataParallel averages the gradients across the
processes during backward, so each one takes exactly the optimizer step that a
single process would take on the whole batch (the mean loss over N equal
slices is the mean loss over the batch), up to the order of float32 additions.
Only rank 0 prints and writes files.

Started without torchrun (WORLD_SIZE unset or 1), nothing here changes anything:
world_size() is 1 and the training loop runs exactly as before.
"""

import os
import sys

import torch
import torch.distributed as dist

from minigpt.plumbing.errors import UserError


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def is_main_process() -> bool:
    return rank() == 0


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def start_data_parallel(args) -> None:
    """Under torchrun: join the process group (NCCL on CUDA, gloo on CPU), pick this process's device, quiet other ranks.

    Changes args.device (cuda:LOCAL_RANK on a GPU machine) and args.no_progress (rank 0 alone shows a bar).
    Does nothing when the script was not started by torchrun.
    """
    if not launched_by_torchrun():
        return
    processes = int(os.environ["WORLD_SIZE"])
    if args.batch_size % processes:
        raise UserError(f"--batch-size {args.batch_size} does not split evenly over {processes} processes; "
                        f"use a multiple of {processes}, e.g. {processes * max(1, args.batch_size // processes)}")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    wants_cuda = args.device.startswith("cuda") or (args.device == "auto" and torch.cuda.is_available())
    if wants_cuda:
        torch.cuda.set_device(local_rank)
        args.device = f"cuda:{local_rank}"
    else:
        args.device = "cpu"
    dist.init_process_group("nccl" if wants_cuda else "gloo")
    if not is_main_process():
        args.no_progress = True
        sys.stdout = open(os.devnull, "w")  # one copy of every printed line, from rank 0


def stop_data_parallel() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def local_share(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """This process's slice of the global batch: rows [rank * B/N, (rank + 1) * B/N) of x and y, each (B, T)."""
    per_process = x.size(0) // world_size()
    start = rank() * per_process
    return x[start:start + per_process], y[start:start + per_process]


def wrap_for_data_parallel(model: torch.nn.Module, device) -> torch.nn.Module:
    """DistributedDataParallel around `model` (it averages gradients in backward); `model` itself when single-process."""
    if world_size() == 1:
        return model
    device = torch.device(device)
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def mean_over_processes(value: float) -> float:
    """The mean of a number over all processes (each process's loss on its slice -> the loss on the global batch)."""
    if world_size() == 1:
        return value
    tensor = torch.tensor([value], dtype=torch.float64)
    if dist.get_backend() == "nccl":
        tensor = tensor.cuda()
    dist.all_reduce(tensor)
    return tensor.item() / world_size()
