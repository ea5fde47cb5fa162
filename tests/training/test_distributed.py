"""Two processes (DDP over gloo, on CPU) end where one process ends; checkpoints move between 1 and 2 ranks.

One torchrun launch runs two trainings on 2 ranks: one from scratch, one resuming a checkpoint
that 1 process wrote. A third training, on 1 process, resumes a checkpoint that the 2 ranks wrote.
All three must end with the weights of the uninterrupted 1-process run (float32: equal to
rounding, since the ranks sum their gradients in another order).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from titans_memory.training.loop import train

WORKER = Path(__file__).with_name("ddp_worker.py")


def _weights(run: Path, step: int) -> dict[str, torch.Tensor]:
    return load_file(str(run / "checkpoints" / f"step_{step:07d}" / "model.safetensors"))


def _copy_checkpoint(src_run: Path, step: int, dst_run: Path) -> None:
    name = f"step_{step:07d}"
    (dst_run / "checkpoints").mkdir(parents=True)
    shutil.copytree(src_run / "checkpoints" / name, dst_run / "checkpoints" / name)


def _torchrun(args: list[str], timeout: float = 900) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    assert proc.returncode == 0, proc.stderr[-4000:]


@pytest.mark.slow  # two training processes: 54-82 s on the 2-core machine under load
@pytest.mark.parametrize("parallel", ["ddp", "fsdp"])
def test_two_ranks_equal_one_and_checkpoints_cross_world_sizes(tmp_path, kit, parallel):
    if parallel == "fsdp":
        pytest.importorskip("torch.distributed.fsdp", reason="FSDP2 (fully_shard) needs PyTorch >= 2.6")
        from torch.distributed import fsdp

        if not hasattr(fsdp, "fully_shard"):
            pytest.skip("FSDP2 (fully_shard) needs PyTorch >= 2.6")
    config = kit.config(steps=4, parallel=parallel)  # 4 streams: 2 per rank; checkpoints at 2 and 4
    one = tmp_path / "one"
    train(config, one, progress=False)  # the reference: 1 process
    _copy_checkpoint(one, 2, tmp_path / "from_one")
    (tmp_path / "config.json").write_text(config.to_json())
    _torchrun([str(WORKER), str(tmp_path / "config.json"), str(tmp_path / "two"), str(tmp_path / "from_one")])
    _copy_checkpoint(tmp_path / "two", 2, tmp_path / "from_two")
    train(config, tmp_path / "from_two", progress=False, resume=True)  # 2 ranks' checkpoint, 1 process
    reference = _weights(one, 4)
    for run in ("two", "from_one", "from_two"):
        got = _weights(tmp_path / run, 4)
        assert set(got) == set(reference)
        for name in reference:
            torch.testing.assert_close(got[name], reference[name], rtol=1e-5, atol=1e-6, msg=f"{run}: {name}")
