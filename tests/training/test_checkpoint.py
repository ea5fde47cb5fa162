"""Checkpoints: round trip, a tampered config or a missing tensor is a clear error, another model's folder too."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from titans_memory import cli
from titans_memory.training.checkpoint import (
    CheckpointError,
    CheckpointManager,
    flatten_optimizer_state,
    load_model,
    resolve,
    unflatten_optimizer_state,
)
from titans_memory.training.loop import train


@pytest.fixture
def checkpoint(tmp_path, kit):
    """A 2-step run's folder and its one checkpoint."""
    run = tmp_path / "run"
    train(kit.config(steps=2, arch="mac"), run, progress=False)
    return run, run / "checkpoints" / "step_0000002"


def test_load_model_round_trip_from_run_or_checkpoint(checkpoint):
    run, ckpt = checkpoint
    model, folder, tok = load_model(run)
    assert folder == ckpt and tok is None and not model.training
    saved = load_file(str(ckpt / "model.safetensors"))
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(tensor, saved[name], rtol=0, atol=0)
    assert resolve(ckpt) == ckpt and resolve(run, prefer="latest") == ckpt


def _edit_config(ckpt, **changes):
    data = json.loads((ckpt / "config.json").read_text())
    data.update(changes)
    (ckpt / "config.json").write_text(json.dumps(data))


def test_tampered_config_shape(checkpoint):
    _, ckpt = checkpoint
    _edit_config(ckpt, vocab_size=300)  # a consistent config, but the embedding's shape changes
    with pytest.raises(CheckpointError, match=r"tensor '.*' has shape \(256, \d+\), the model built from config.json expects \(300, "):
        load_model(ckpt)


def test_tampered_config_field(checkpoint):
    _, ckpt = checkpoint
    _edit_config(ckpt, arch="transformer")
    with pytest.raises(CheckpointError, match=r"config.json': ModelConfig.arch must be one of"):
        load_model(ckpt)


def test_tampered_config_architecture_with_other_tensors(checkpoint):
    _, ckpt = checkpoint
    _edit_config(ckpt, arch="swa", memory=None)
    with pytest.raises(CheckpointError, match=r"has the tensor 'blocks\.0\.(gate|memory)\..*', which this model does not have"):
        load_model(ckpt)


def test_missing_tensor(checkpoint):
    _, ckpt = checkpoint
    tensors = load_file(str(ckpt / "model.safetensors"))
    tensors.pop("head.weight")
    save_file(tensors, str(ckpt / "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"is missing the tensor 'head.weight'"):
        load_model(ckpt)


def test_corrupt_weights_and_json(checkpoint):
    _, ckpt = checkpoint
    (ckpt / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match=r"weights .* cannot be read"):
        load_model(ckpt)
    (ckpt / "config.json").write_text("{oops")
    with pytest.raises(CheckpointError, match=r"is not valid JSON"):
        load_model(ckpt)


def test_folder_of_another_model(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2", "n_embd": 768}))
    save_file({"wte.weight": torch.zeros(2, 2)}, str(tmp_path / "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"not a Titans checkpoint: its config.json has model_type 'gpt2'"):
        load_model(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CheckpointError, match=r"not a Titans checkpoint: no config.json"):
        load_model(empty)
    with pytest.raises(CheckpointError, match=r"does not exist"):
        load_model(tmp_path / "nowhere")


@pytest.mark.parametrize("command", ["sample", "eval"])
def test_cli_bad_checkpoints_are_one_line_exit_2(tmp_path, capsys, command):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    for path in (tmp_path, tmp_path / "missing"):
        assert cli.main([command, "--checkpoint", str(path)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith(f"titans {command}: error: ")
        assert "not a Titans checkpoint" in err or "does not exist" in err


def test_cli_tampered_checkpoint_is_one_line_exit_2(checkpoint, capsys):
    _, ckpt = checkpoint
    _edit_config(ckpt, depth=3)
    assert cli.main(["sample", "--checkpoint", str(ckpt), "--max-new-tokens", "2"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is missing the tensor 'blocks.2." in err


def test_optimizer_state_flattens_and_back():
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=0.1, betas=(0.8, 0.9))
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    state = {"state": {"weight": opt.state[model.weight], "bias": opt.state[model.bias]},
             "param_groups": [{**{k: v for k, v in opt.param_groups[0].items() if k != "params"}, "params": ["weight", "bias"]}]}
    tensors, groups = flatten_optimizer_state(state)
    assert set(tensors) == {f"optimizer/{p}/{k}" for p in ("weight", "bias") for k in ("step", "exp_avg", "exp_avg_sq")}
    json.dumps(groups)  # JSON-able
    back = unflatten_optimizer_state(tensors, groups)
    assert back["param_groups"][0]["betas"] == (0.8, 0.9)
    torch.testing.assert_close(back["state"]["weight"]["exp_avg"], opt.state[model.weight]["exp_avg"])


def test_manager_keeps_the_last_n_and_the_best(tmp_path):
    manager = CheckpointManager(tmp_path, keep_last=2)
    for step, bpb in [(1, 3.0), (2, 2.0), (3, 2.5), (4, None), (5, 2.4)]:
        manager.folder_for(step).mkdir(parents=True)
        manager.commit(step, bpb)
    kept = sorted(p.name for p in manager.root.iterdir() if p.is_dir())
    assert kept == ["step_0000002", "step_0000004", "step_0000005"]
    index = manager.index()
    assert index["best"] == "step_0000002" and index["latest"] == "step_0000005"
    assert manager.latest() == manager.folder_for(5)


def test_a_config_saved_before_mac_write_existed_loads_as_the_mac_it_was(checkpoint):
    """0.1.0 wrote no ``mac_write``: its MAC wrote y, which the loader keeps (the default is now y+u)."""
    run, ckpt = checkpoint
    data = json.loads((ckpt / "config.json").read_text())
    assert data["mac_write"] == "y+u"  # a new checkpoint names its write
    del data["mac_write"]
    (ckpt / "config.json").write_text(json.dumps(data))
    model, _, _ = load_model(ckpt)
    assert model.config.mac_write == "y"
