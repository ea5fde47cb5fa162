"""TrainConfig: defaults valid, every field checked with its name, files and --set overrides."""

from __future__ import annotations

import json

import pytest

from titans_memory import cli
from titans_memory.core.presets import preset
from titans_memory.training.config import TrainConfig


def test_defaults_are_valid_and_build_the_model_config():
    config = TrainConfig()
    model = config.model_config(256)
    assert (model.arch, model.dim, model.depth, model.heads) == ("mac", 128, 2, 4)
    assert model.memory == preset("titans", dim=128, heads=4, chunk_size=16)
    assert config.checkpoint_every == config.eval_every


def test_swa_has_no_memory_and_memory_layers_parse():
    assert TrainConfig(arch="swa").model_config(256).memory is None
    assert TrainConfig(depth=4, memory_layers="1, 3").model_config(256).layers_with_memory == (1, 3)


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"arch": "gpt"}, r"TrainConfig\.arch must be one of"),
        ({"steps": 0}, r"TrainConfig\.steps must be >= 1"),
        ({"steps": 2.5}, r"TrainConfig\.steps must be int"),
        ({"lr": -1.0}, r"TrainConfig\.lr must be in"),
        ({"held_out_fraction": 1.0}, r"TrainConfig\.held_out_fraction"),
        ({"memory_preset": "nope"}, r"TrainConfig\.memory_preset must be one of"),
        ({"precision": "fp8"}, r"TrainConfig\.precision"),
        ({"parallel": "zero3"}, r"TrainConfig\.parallel"),
        ({"memory_layers": "1,x"}, r"TrainConfig\.memory_layers"),
        ({"batch_size": 6, "grad_accum": 4}, r"batch_size \(6\) must be a multiple of grad_accum"),
        ({"eval_every": 3, "state_segments": 2}, r"save_every \(3; .*multiple of state_segments"),
        ({"data": " "}, r"TrainConfig\.data"),
    ],
)
def test_bad_fields_name_themselves(changes, match):
    with pytest.raises((TypeError, ValueError), match=match):
        TrainConfig(**changes)


def test_model_config_errors_come_at_config_time():
    with pytest.raises(ValueError, match=r"ModelConfig.dim \(30\) must be divisible by heads"):
        TrainConfig(arch="swa", dim=30, heads=4)
    with pytest.raises(ValueError, match=r"MemoryConfig.heads \(4\) must divide dim \(30\)"):
        TrainConfig(arch="lmm", dim=30, heads=4)


def test_from_file_and_round_trip(tmp_path):
    config = TrainConfig(arch="mag", steps=7, tokenizer=None, memory_layers="0")
    path = tmp_path / "c.json"
    path.write_text(config.to_json())
    assert TrainConfig.from_file(path) == config
    path.write_text(json.dumps({"steps": 3}))
    assert TrainConfig.from_file(path) == TrainConfig(steps=3)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("{not json", r"is not valid JSON"),
        ('{"stepz": 3}', r"unknown TrainConfig fields \['stepz'\]"),
        ('{"steps": "many"}', r"TrainConfig\.steps must be int"),
        ("[1, 2]", r"expected a JSON object"),
    ],
)
def test_from_file_errors(tmp_path, text, match):
    path = tmp_path / "c.json"
    path.write_text(text)
    with pytest.raises(ValueError, match=match):
        TrainConfig.from_file(path)


def test_parse_override_by_field_type():
    assert cli.parse_override("steps=12", TrainConfig) == ("steps", 12)
    assert cli.parse_override("lr=1e-3", TrainConfig) == ("lr", 1e-3)
    assert cli.parse_override("tokenizer=none", TrainConfig) == ("tokenizer", None)
    assert cli.parse_override("memory_layers=0,2", TrainConfig) == ("memory_layers", "0,2")
    assert cli.parse_override("threads=2", TrainConfig) == ("threads", 2)


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["--set", "stepz=3"], r"--set: unknown field 'stepz'"),
        (["--set", "steps=abc"], r"--set steps='abc': expected int"),
        (["--set", "steps"], r"--set expects FIELD=VALUE"),
        (["--set", "steps=0"], r"TrainConfig\.steps must be >= 1"),
        (["--config", "/no/such/file.json"], r"cannot read the config file"),
        (["--set", "data=/no/such/folder"], r"data path '/no/such/folder' does not exist"),
        (["--set", "dim=30", "--set", "arch=swa"], r"ModelConfig.dim \(30\) must be divisible by heads"),
    ],
)
def test_train_cli_bad_config_is_one_line_exit_2(tmp_path, capsys, args, match):
    assert cli.main(["train", "--out", str(tmp_path / "run"), "--quiet", *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("titans train: error: ")
    assert __import__("re").search(match, err), err


def test_train_cli_folder_without_text_is_one_line_exit_2(tmp_path, capsys):
    data = tmp_path / "binary"
    data.mkdir()
    (data / "blob.bin").write_bytes(bytes(range(256)))
    assert cli.main(["train", "--out", str(tmp_path / "run"), "--quiet", "--set", f"data={data}"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "holds no text files" in err
