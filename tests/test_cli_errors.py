"""Every error of a hostile command line is one line and exit status 2, never a traceback, and
comes before the work: devices, temperatures, oversized or tampered checkpoints, resolutions,
output paths that are not UTF-8, data files that are not UTF-8, out-of-range integers, and a
checkpoint that names data of its own."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from titans_memory import cli
from titans_memory.training.config import TrainConfig
from titans_memory.training.data import file_corpus
from titans_memory.training.loop import train

WORDS = "memory surprise momentum forgetting attention window token gradient retention bias".split()


def write_corpus(folder: Path, n_files: int = 8) -> Path:
    rng = random.Random(0)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n_files):
        (folder / f"doc{i}.txt").write_text(" ".join(rng.choice(WORDS) for _ in range(300 + 40 * i)) + "\n")
    return folder


def tiny(data: Path, **changes) -> TrainConfig:
    base = dict(arch="lmm", dim=16, heads=2, depth=2, window=16, segment=16, memory_chunk=8, persistent_tokens=2,
                seq_len=32, state_segments=2, batch_size=4, steps=2, warmup_steps=1, eval_every=2,
                eval_tokens=256, eval_context=64, eval_batch=4, threads=1, data=str(data))
    return TrainConfig(**{**base, **changes})


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A 2-step run folder (one checkpoint) trained on a small corpus."""
    base = tmp_path_factory.mktemp("cli_errors")
    config = tiny(write_corpus(base / "corpus"))
    (base / "config.json").write_text(config.to_json())
    train(config, base / "run", progress=False)
    return base / "run"


def one_line_error(capsys, argv: list[str], *fragments: str) -> str:
    assert cli.main(argv) == 2
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and "Traceback" not in captured.err, captured.err
    for fragment in fragments:
        assert fragment in captured.err, (fragment, captured.err)
    return captured.err


# --- devices and sampling ------------------------------------------------------------------------
@pytest.mark.parametrize("command", ["sample", "eval"])
@pytest.mark.parametrize("device, fragment", [
    ("tpu9", "is not a device torch knows"),
    ("cuda:99", "CUDA" if not torch.cuda.is_available() else "CUDA device(s)"),
    ("meta", "this library runs on cpu, cuda or mps, not meta"),
])
def test_unknown_or_unavailable_device(run, capsys, command, device, fragment):
    one_line_error(capsys, [command, "--checkpoint", str(run), "--device", device], f"--device {device!r}", fragment)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_on_a_machine_without_it(run, capsys):
    one_line_error(capsys, ["sample", "--checkpoint", str(run), "--device", "cuda"], "CUDA is not available")


@pytest.mark.parametrize("temperature", ["1e-40", "1e-30", "5e-5", "inf", "nan", "-1"])
def test_temperature_too_small_to_sample(run, capsys, temperature):
    one_line_error(capsys, ["sample", "--checkpoint", str(run), "--temperature", temperature, "--device", "cpu"],
                   "--temperature must be >= 0 (0: greedy; otherwise a finite number >= 0.0001")


def test_the_smallest_temperature_samples(run, capsys):
    assert cli.main(["sample", "--checkpoint", str(run), "--temperature", "1e-4", "--max-new-tokens", "5",
                     "--prompt", "memory", "--device", "cpu"]) == 0
    assert capsys.readouterr().out.startswith("memory")


# --- tampered checkpoints ------------------------------------------------------------------------
def _copy_checkpoint(run: Path, dest: Path) -> Path:
    import shutil

    shutil.copytree(run, dest)
    (dest / ".lock").unlink(missing_ok=True)
    return dest


def test_a_config_too_large_for_the_machine_is_refused_before_allocating(run, tmp_path, capsys):
    folder = _copy_checkpoint(run, tmp_path / "run") / "checkpoints" / "step_0000002"
    config = json.loads((folder / "config.json").read_text())
    config["vocab_size"] = 10**12  # 10^12 x 16 embeddings and as many head weights: 119 TiB
    (folder / "config.json").write_text(json.dumps(config))
    one_line_error(capsys, ["sample", "--checkpoint", str(folder), "--device", "cpu"],
                   "the model's parameters need about", "GiB", "more than the", "free on cpu")
    one_line_error(capsys, ["eval", "--checkpoint", str(folder), "--device", "cpu"], "the model's parameters need about")


def test_train_refuses_a_model_too_large_before_allocating(tmp_path, capsys):
    data = write_corpus(tmp_path / "corpus")
    one_line_error(capsys, ["train", "--set", f"data={data}", "--set", "dim=4000000", "--set", "heads=2",
                            "--set", "arch=swa", "--out", str(tmp_path / "run"), "--quiet"],
                   "TrainConfig: the model's parameters need about")


def test_resume_with_an_optimizer_state_of_the_wrong_shape(run, tmp_path, capsys):
    copy = _copy_checkpoint(run, tmp_path / "run")
    path = copy / "checkpoints" / "step_0000002" / "training.safetensors"
    tensors = load_file(str(path))
    name = next(k for k in sorted(tensors) if k.endswith("/exp_avg") and tensors[k].dim() == 2)
    tensors[name] = torch.zeros(3, 5)
    save_file(tensors, str(path))
    config = run.parent / "config.json"
    config_data = {**json.loads(config.read_text()), "steps": 4}
    (tmp_path / "c.json").write_text(json.dumps(config_data))
    param = name[len("optimizer/"):].rpartition("/")[0]
    one_line_error(capsys, ["train", "--config", str(tmp_path / "c.json"), "--out", str(copy), "--resume", "--quiet"],
                   f"optimizer state 'exp_avg' of {param!r} has shape (3, 5)")


# --- figures, output paths, data -----------------------------------------------------------------
@pytest.mark.parametrize("dpi", ["20000", "5"])
def test_figures_dpi_out_of_range(tmp_path, capsys, dpi):
    one_line_error(capsys, ["figures", "--dpi", dpi, "--out", str(tmp_path / "f"), "--quiet"], "--dpi must be in 10..1200")
    assert not (tmp_path / "f").exists()  # refused before any work


@pytest.mark.skipif(os.name == "nt" or not hasattr(os, "fsdecode"), reason="POSIX byte paths")
@pytest.mark.parametrize("command", ["train", "figures", "eval"])
def test_an_output_path_that_is_not_utf8_is_refused_at_start(tmp_path, run, capsys, command):
    bad = os.fsdecode(os.fsencode(str(tmp_path)) + b"/out\xff")
    argv = {
        "train": ["train", "--out", bad, "--quiet", "--set", "steps=1"],
        "figures": ["figures", "--out", bad, "--quiet"],
        "eval": ["eval", "--checkpoint", str(run), "--out", bad + ".json"],
    }[command]
    one_line_error(capsys, argv, "--out '", "out\\xff", "is not valid UTF-8")
    assert sorted(os.listdir(tmp_path)) == []


def test_eval_out_is_checked_before_the_work(tmp_path, capsys):
    # the checkpoint does not exist either: the --out error coming first shows the order
    one_line_error(capsys, ["eval", "--checkpoint", str(tmp_path / "none"), "--out", str(tmp_path / "no" / "r.json")],
                   "--out: the directory", "does not exist")
    one_line_error(capsys, ["eval", "--checkpoint", str(tmp_path / "none"), "--out", str(tmp_path)], "is a directory")


@pytest.mark.skipif(os.name == "nt", reason="POSIX byte file names")
def test_data_files_whose_name_or_contents_are_not_utf8_are_skipped_and_named(tmp_path, capsys):
    data = write_corpus(tmp_path / "corpus", n_files=4)
    (data / "latin1.txt").write_bytes("caf\xe9 na\xefve \xe0 la carte\n".encode("latin-1") * 20)
    with open(os.path.join(os.fsencode(str(data)), b"name\xff.txt"), "wb") as fh:
        fh.write(b"plain text\n" * 20)
    corpus = file_corpus(data, 0.2)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "skipped 2 file(s)" in err
    assert "latin1.txt" in err and "name\\xff.txt" in err
    names = {d.source for d in corpus.train + corpus.held_out}
    assert names == {f"doc{i}.txt" for i in range(4)}


def test_a_data_file_that_is_not_utf8_is_named(tmp_path, capsys):
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("caf\xe9\n".encode("latin-1") * 50)
    one_line_error(capsys, ["train", "--set", f"data={bad}", "--out", str(tmp_path / "run"), "--quiet"],
                   f"data file {str(bad)!r} holds no text", "not UTF-8")


@pytest.mark.parametrize("field, value", [("seed", "99999999999999999999"), ("steps", str(2**64)),
                                          ("eval_tokens", str(-(2**70)))])
def test_an_integer_out_of_range_names_the_field(tmp_path, capsys, field, value):
    one_line_error(capsys, ["train", "--set", f"{field}={value}", "--out", str(tmp_path / "run"), "--quiet"],
                   f"TrainConfig.{field} must")


# --- a checkpoint that names its own data --------------------------------------------------------
def test_eval_shows_a_data_path_read_from_the_checkpoint_before_using_it(run, tmp_path, capsys):
    copy = _copy_checkpoint(run, tmp_path / "run")
    state_path = copy / "checkpoints" / "step_0000002" / "trainer_state.json"
    state = json.loads(state_path.read_text())
    elsewhere = write_corpus(tmp_path / "elsewhere")
    state["config"]["data"] = str(elsewhere)
    state_path.write_text(json.dumps(state))
    args = ["eval", "--checkpoint", str(copy), "--contexts", "32", "--tokens", "64", "--device", "cpu"]
    assert cli.main(args) == 0
    err = capsys.readouterr().err
    assert f"scoring the held-out part of {str(elsewhere)!r}, the data named in {str(state_path)!r}" in err
    assert cli.main(args + ["--data", str(run.parent / "corpus")]) == 0  # the user's data: nothing to show
    assert "the data named in" not in capsys.readouterr().err
    state["config"]["data"] = ["/etc/passwd"]
    state_path.write_text(json.dumps(state))
    one_line_error(capsys, args, "data must be a non-empty string")
