"""Fault injection: no run is ever lost or silently wrong.

* kill -9 at the points where a checkpoint is half written (a real ``titans train`` subprocess that
  SIGKILLs itself there through the ``TITANS_FAULT_POINT`` test hook), then ``--resume``: the
  weights, the log and the trainer state equal those of the uninterrupted run;
* two runs into one folder: the second is refused (one line, exit 2); a killed run's lock is stale;
* a full disk (``OSError(ENOSPC)`` raised by the write): one line naming the path and the cause,
  the earlier checkpoints intact, no temporary file left, and a later resume works;
* a diverging run stops at the step where the loss or the gradients become non-finite; a
  non-finite checkpoint is never the best and never the reason the last finite one is pruned;
  every JSON file is valid JSON.
"""

from __future__ import annotations

import errno
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from titans_memory import cli
from titans_memory.fileio import (
    FAULT_ENV,
    RunLock,
    WriteError,
    atomic_write_text,
    json_text,
    save_figure,
)
from titans_memory.training import checkpoint as ckpt_module
from titans_memory.training.checkpoint import CheckpointManager, load_model
from titans_memory.training.config import TrainConfig
from titans_memory.training.loop import DivergenceError, LMLoss, train

TIMING = {"elapsed_s", "tokens_per_s", "seconds"}  # wall-clock fields: the only ones a resume may change


def strict_json(path: Path) -> object:
    """Parse ``path`` as JSON proper: NaN and Infinity tokens are errors (Python's json accepts them)."""
    def refuse(token: str) -> None:
        raise AssertionError(f"{path} holds the non-JSON token {token}")

    return json.loads(path.read_text(encoding="utf-8"), parse_constant=refuse)


def without_timing(value: object) -> object:
    if isinstance(value, dict):
        return {k: without_timing(v) for k, v in value.items() if k not in TIMING}
    if isinstance(value, list):
        return [without_timing(v) for v in value]
    return value


def run_state(run: Path) -> dict:
    """Everything a run folder holds that must not depend on kills and resumes."""
    root = run / "checkpoints"
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    folders = sorted(p.name for p in root.iterdir())
    states = {name: without_timing(strict_json(root / name / "trainer_state.json"))
              for name in folders if name.startswith("step_")}
    weights = {name: load_file(str(root / name / "model.safetensors")) for name in folders if name.startswith("step_")}
    return {"log": without_timing(log), "folders": folders, "index": strict_json(root / "index.json"),
            "states": states, "weights": weights}


def assert_same_run(got: dict, want: dict) -> None:
    assert got["folders"] == want["folders"]  # no .tmp or .trash folder left, the same checkpoints kept
    assert got["log"] == want["log"]  # every step logged once, the same losses
    assert got["index"] == want["index"]
    assert got["states"] == want["states"]
    for name, tensors in want["weights"].items():
        assert got["weights"][name].keys() == tensors.keys()
        for key, tensor in tensors.items():
            assert torch.equal(got["weights"][name][key], tensor), (name, key)


@pytest.fixture(scope="module")
def setup(tmp_path_factory, corpus_dir):
    """A config file of an 8-step run (checkpoints at 2, 4, 6, 8; two kept) and its uninterrupted run."""
    base = tmp_path_factory.mktemp("faults")
    config = TrainConfig(  # conftest's tiny_config, which a module-scoped fixture cannot reach
        arch="lmm", dim=16, heads=2, depth=2, window=16, segment=16, memory_chunk=8, persistent_tokens=2,
        seq_len=32, state_segments=2, batch_size=4, steps=8, warmup_steps=1, lr=3e-3, eval_every=2,
        eval_tokens=256, eval_context=64, eval_batch=4, threads=1, data=str(corpus_dir), keep_last=2,
    )
    path = base / "config.json"
    path.write_text(config.to_json())
    reference = base / "reference"
    train(config, reference, progress=False)
    return base, path, config, run_state(reference)


def titans_train(config: Path, out: Path, *, resume: bool = False, fault: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop(FAULT_ENV, None)
    if fault is not None:
        env[FAULT_ENV] = fault
    args = [sys.executable, "-m", "titans_memory.cli", "train", "--config", str(config), "--out", str(out), "--quiet"]
    return subprocess.run(args + (["--resume"] if resume else []), env=env, capture_output=True, text=True, timeout=600)


# --- kill -9 and resume ----------------------------------------------------------------------------
def test_kill_9_at_every_point_of_a_checkpoint_then_resume_equals_the_uninterrupted_run(setup):
    """One run killed four times: mid-way through the .tmp folder, right after the rename, before the
    index update, in the middle of pruning; each time resumed. The result is the uninterrupted run."""
    base, config, _, want = setup
    out = base / "killed"
    for i, fault in enumerate(("writing_tmp:4", "after_rename:4", "before_index:6", "during_prune")):
        done = titans_train(config, out, resume=i > 0, fault=fault)
        assert done.returncode == -9, (fault, done.returncode, done.stderr)
    done = titans_train(config, out, resume=True)
    assert done.returncode == 0, done.stderr
    assert "stale lock of process" in done.stderr  # the killed run's lock file, detected and taken over
    assert_same_run(run_state(out), want)


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["writing_tmp:2", "after_rename:2", "before_index:2", "writing_tmp:8",
                                   "after_rename:8", "before_index:8", "during_prune"])
def test_kill_9_at_one_point_then_resume(setup, fault):
    base, config, _, want = setup
    out = base / f"killed-{fault.replace(':', '-')}"
    assert titans_train(config, out, fault=fault).returncode == -9
    done = titans_train(config, out, resume=True)
    assert done.returncode == 0, done.stderr
    assert_same_run(run_state(out), want)


def test_resume_continues_the_loss_average_and_logs_each_evaluation_once(tmp_path, kit):
    """Checkpoints every 2 steps, evaluations every 4: the resumed run's averaging window holds
    the steps before the stop, and a log line written after the last checkpoint is not repeated."""
    config = kit.config(steps=8, eval_every=4, save_every=2)
    train(config, tmp_path / "whole", progress=False)
    train(config, tmp_path / "split", progress=False, stop_at_step=6)
    # a killed run may have logged an evaluation after its last checkpoint: the resume drops it
    with open(tmp_path / "split" / "log.jsonl", "a") as fh:
        fh.write(json.dumps({"step": 8, "train_loss": 0.0}) + "\n")
    train(config, tmp_path / "split", resume=True, progress=False)
    whole, split = run_state(tmp_path / "whole"), run_state(tmp_path / "split")
    assert_same_run(split, whole)
    assert [r["step"] for r in split["log"]] == [4, 8]


def test_checkpoint_files_and_folder_are_flushed_before_the_rename(tmp_path, kit, monkeypatch):
    import titans_memory.fileio as fileio

    events: list[tuple[str, Path]] = []
    real_fsync, real_replace = fileio._fsync_path, os.replace

    def fsync(path):
        events.append(("fsync", Path(path)))
        real_fsync(path)

    def replace(src, dst):
        events.append(("replace", Path(src)))
        real_replace(src, dst)

    monkeypatch.setattr(fileio, "_fsync_path", fsync)
    monkeypatch.setattr(os, "replace", replace)
    train(kit.config(steps=2), tmp_path / "run", progress=False)
    tmp = tmp_path / "run" / "checkpoints" / "step_0000002.tmp"
    published = events.index(("replace", tmp))
    flushed = {path for kind, path in events[:published] if kind == "fsync"}
    files = {tmp / p.name for p in (tmp_path / "run" / "checkpoints" / "step_0000002").iterdir()}
    assert files and files | {tmp} <= flushed  # every file and the folder itself
    assert ("fsync", tmp_path / "run" / "checkpoints") in events[published:]  # and the rename


# --- one run per folder ----------------------------------------------------------------------------
def test_a_second_run_into_a_busy_folder_is_one_line_and_exit_2(tmp_path, kit, capsys):
    run = tmp_path / "run"
    (tmp_path / "c.json").write_text(kit.config().to_json())
    with RunLock(run):  # a first run holds the folder
        assert cli.main(["train", "--config", str(tmp_path / "c.json"), "--out", str(run), "--quiet"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1
        assert f"is in use by another titans train (process {os.getpid()})" in err
        assert not (run / "checkpoints").exists() and not (run / "log.jsonl").exists()
    assert cli.main(["train", "--config", str(tmp_path / "c.json"), "--out", str(run), "--quiet"]) == 0


def test_the_lock_is_exclusive_and_released_on_any_exit(tmp_path):
    lock = RunLock(tmp_path).acquire()
    with pytest.raises(ValueError, match="in use by another titans train"):
        RunLock(tmp_path).acquire()
    lock.release()
    with RunLock(tmp_path) as again:
        assert again.stale_pid is None  # released cleanly: not stale
    # a process killed while holding it: the OS drops the lock, the file names the dead process
    code = f"from titans_memory.fileio import RunLock; import os; RunLock({str(tmp_path)!r}).acquire(); os._exit(0)"
    subprocess.run([sys.executable, "-c", code], check=True)
    with RunLock(tmp_path) as after:
        assert after.stale_pid is not None and after.stale_pid != os.getpid()


# --- a full disk -----------------------------------------------------------------------------------
def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_disk_full_while_writing_a_checkpoint(tmp_path, kit, monkeypatch, capsys):
    config = kit.config(steps=6)
    run = tmp_path / "run"
    train(config, run, progress=False, stop_at_step=2)
    before = load_file(str(run / "checkpoints" / "step_0000002" / "model.safetensors"))
    real_save = ckpt_module.save_file
    monkeypatch.setattr(ckpt_module, "save_file", _enospc)
    (tmp_path / "c.json").write_text(config.to_json())
    assert cli.main(["train", "--config", str(tmp_path / "c.json"), "--out", str(run), "--quiet", "--resume"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert f"cannot write the checkpoint {str(run / 'checkpoints' / 'step_0000004')!r}: No space left on device" in err
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["index.json", "step_0000002"]
    after = load_file(str(run / "checkpoints" / "step_0000002" / "model.safetensors"))
    assert all(torch.equal(before[k], after[k]) for k in before)
    monkeypatch.setattr(ckpt_module, "save_file", real_save)  # space again: the resume works
    train(config, run, resume=True, progress=False)
    train(config, tmp_path / "whole", progress=False)
    assert_same_run(run_state(run), run_state(tmp_path / "whole"))


def test_disk_full_while_writing_a_file_or_a_figure(tmp_path, monkeypatch):
    target = tmp_path / "eval.json"
    target.write_text("old\n")
    monkeypatch.setattr(os, "fsync", _enospc)
    with pytest.raises(WriteError, match=r"cannot write the evaluation '.*eval.json': No space left on device"):
        atomic_write_text(target, "new\n", what="evaluation")
    monkeypatch.undo()
    assert target.read_text() == "old\n" and sorted(p.name for p in tmp_path.iterdir()) == ["eval.json"]

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure()

    def half_written(path, **kwargs):
        Path(path).write_bytes(b"\x89PNG")  # a partial image, then the disk is full
        _enospc()

    monkeypatch.setattr(fig, "savefig", half_written)
    with pytest.raises(WriteError, match=r"cannot write the figure '.*a.png': No space left on device"):
        save_figure(fig, tmp_path / "a.png", dpi=50)
    plt.close(fig)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eval.json"]  # no 0-byte or partial file


# --- divergence ------------------------------------------------------------------------------------
def test_a_diverging_run_stops_naming_the_step(tmp_path, kit, capsys):
    """lr 1e4, no clipping: the loss or gradients become non-finite within a few steps. The run stops
    there (exit 2, one line naming the step), the checkpoints before it stay, all finite, and the
    best and the last finite one survive pruning (keep_last 1)."""
    config = kit.config(steps=20, lr=1e4, warmup_steps=0, grad_clip=0.0, keep_last=1)
    (tmp_path / "c.json").write_text(config.to_json())
    run = tmp_path / "run"
    assert cli.main(["train", "--config", str(tmp_path / "c.json"), "--out", str(run), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    match = re.search(r"titans train: error: the run diverged at step (\d+): the (training loss|gradient norm|"
                      r"activations) .*this step was not applied", err)
    assert match, err
    diverged = int(match.group(1))
    index = strict_json(run / "checkpoints" / "index.json")
    kept = CheckpointManager(run, 1).steps()
    assert kept and index["best"] in kept and index["last_finite"] in kept and index["latest"] in kept
    assert int(index["latest"][5:]) < diverged
    for name in kept:
        model, _, _ = load_model(run / "checkpoints" / name)
        assert all(bool(torch.isfinite(p).all()) for p in model.parameters())
    log = [json.loads(line, parse_constant=_refuse) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == list(range(2, diverged, 2))


def _refuse(token):
    raise AssertionError(f"non-JSON token {token}")


def test_a_memory_s_divergence_gets_the_same_message(tmp_path, kit, monkeypatch):
    real = LMLoss.forward
    calls = {"n": 0}

    def forward(self, inputs, targets, cache):
        calls["n"] += 1
        if calls["n"] == 3:  # the third step: the memory's own check finds a non-finite input
            raise ValueError("x contains NaN or Inf")
        return real(self, inputs, targets, cache)

    monkeypatch.setattr(LMLoss, "forward", forward)
    with pytest.raises(DivergenceError, match=r"^the run diverged at step 3: the activations became NaN or Inf "
                                              r"\(in a memory's input or state\)"):
        train(kit.config(steps=4), tmp_path / "run", progress=False)


def test_non_finite_checkpoints_are_never_best_nor_prune_the_last_finite(tmp_path):
    manager = CheckpointManager(tmp_path, keep_last=2)
    for step, bpb, finite in [(1, 2.0, True), (2, 1.5, True), (3, float("nan"), True), (4, float("inf"), True),
                              (5, 0.5, False), (6, None, False)]:
        manager.folder_for(step).mkdir(parents=True)
        manager.commit(step, bpb, finite=finite)
        index = strict_json(tmp_path / "checkpoints" / "index.json")
        assert index["best"] == f"step_{min(step, 2):07d}" and index["best_bits_per_byte"] == (2.0 if step == 1 else 1.5)
        assert index["last_finite"] == f"step_{min(step, 2):07d}"
    assert manager.steps() == ["step_0000002", "step_0000005", "step_0000006"]


def test_every_json_is_valid_json():
    assert json_text({"a": float("nan"), "b": [float("inf"), 1.5], "c": (float("-inf"),)}) == (
        '{\n  "a": null,\n  "b": [\n    null,\n    1.5\n  ],\n  "c": [\n    null\n  ]\n}'
    )
