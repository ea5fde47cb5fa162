"""Run by ``torchrun`` from test_distributed.py: two trainings in one process group (gloo, CPU).

Usage: torchrun --nproc-per-node 2 ddp_worker.py CONFIG.json FRESH_DIR RESUME_DIR
The first trains from scratch into FRESH_DIR; the second resumes the checkpoint in RESUME_DIR.
"""

import sys

import torch
import torch.distributed as dist

from titans_memory.training.config import TrainConfig
from titans_memory.training.loop import train

if __name__ == "__main__":
    config_path, fresh, resumed = sys.argv[1:4]
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    config = TrainConfig.from_file(config_path)
    train(config, fresh, progress=False)
    train(config, resumed, progress=False, resume=True)
    dist.barrier()  # both ranks done before the group goes (gloo aborted once at exit without it)
    dist.destroy_process_group()
