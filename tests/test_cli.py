"""The ``titans`` command: parser, registry, and ``titans figures`` end to end."""

from __future__ import annotations

import argparse
import re

import pytest

from titans_memory import cli

FIGURE_NAMES = {
    "surprise_over_time.png",
    "memory_update_heatmap.png",
    "momentum_vs_raw.png",
    "forgetting_effect.png",
    "full_pipeline.png",
    "miras_presets.png",
}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow  # runs every demo scenario and draws six figures: ~18 s under load
def test_figures_writes_every_png(tmp_path, capsys):
    out = tmp_path / "nested" / "figs"
    assert cli.main(["figures", "--out", str(out), "--dpi", "40"]) == 0
    written = {p.name for p in out.iterdir()}
    assert written == FIGURE_NAMES
    for name in FIGURE_NAMES:
        data = (out / name).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 5_000
    printed = capsys.readouterr().out.split()
    assert {p.rsplit("/", 1)[-1] for p in printed} == FIGURE_NAMES


def test_figures_default_directory_is_figures_in_cwd():
    args = cli.build_parser().parse_args(["figures"])
    assert str(args.out) == "figures"


def test_a_subcommand_is_required():
    with pytest.raises(SystemExit) as exc:
        cli.main([])
    assert exc.value.code == 2


def test_registry_is_extensible(monkeypatch):
    monkeypatch.setattr(cli, "SUBCOMMANDS", dict(cli.SUBCOMMANDS))
    calls = []

    def configure(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--n", type=int, default=1)

    def run(args: argparse.Namespace) -> int:
        calls.append(args.n)
        return 3

    cli.register(cli.Subcommand("echo", "test command", configure, run))
    assert cli.main(["echo", "--n", "5"]) == 3
    assert calls == [5]
    with pytest.raises(ValueError, match=r"subcommand 'echo' is already registered"):
        cli.register(cli.Subcommand("echo", "again", configure, run))


# --- titans presets ---------------------------------------------------------------------------


def test_presets_lists_every_preset(capsys):
    from titans_memory.core.presets import PRESETS

    assert cli.main(["presets"]) == 0
    names = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert names == list(PRESETS)


def test_presets_prints_the_config_with_overrides(capsys):
    import json

    from titans_memory import MemoryConfig, preset

    assert cli.main(["presets", "moneta", "--set", "dim=64", "--set", "heads=2"]) == 0
    config = MemoryConfig.from_dict(json.loads(capsys.readouterr().out))
    assert config == preset("moneta", dim=64, heads=2)
    assert (config.objective, config.retention, config.p, config.q) == ("lp", "lq", 3.0, 4.0)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["presets", "nope"], r"unknown preset 'nope'; choose one of titans, moneta"),
        (["presets", "titans", "--set", "chunk_size=0"], r"MemoryConfig.chunk_size must be an integer >= 1, got 0"),
        (["presets", "titans", "--set", "colour=red"], r"--set: unknown field 'colour'; fields: dim, heads"),
        (["presets", "titans", "--set", "dim"], r"--set expects FIELD=VALUE, got 'dim'"),
        (["presets", "titans", "--set", "momentum=maybe"], r"--set momentum='maybe': expected true/false"),
        (["presets", "titans", "--set", "dim=eight"], r"--set dim='eight': expected int"),
        (["presets", "titans", "--set", "head_dim=x"], r"--set head_dim='x': expected int or none"),
        (["presets", "titans", "--set", "p=inf"], r"MemoryConfig.p must be a finite number"),
        (["presets", "--set", "dim=8"], r"--set needs a preset name"),
    ],
)
def test_presets_bad_input_is_one_line_and_status_2(argv, message, capsys):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("titans presets: error: ")
    assert re.search(message, err), err


def test_set_parses_each_value_by_the_fields_type(capsys):
    import json

    argv = ["presets", "titans", "--set", "momentum=false", "--set", "head_dim=none", "--set", "max_lr=0.2",
            "--set", "activation=tanh", "--set", "lp_sign_sharpness=none", "--set", "chunk_size=16"]
    assert cli.main(argv) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["momentum"] is False and data["head_dim"] is None and data["max_lr"] == 0.2
    assert data["activation"] == "tanh" and data["chunk_size"] == 16


def test_figures_bad_output_paths_are_one_line_and_status_2(tmp_path, capsys, monkeypatch):
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    cases = [
        (["--out", str(a_file)], r"--out '.*a_file' is a file, not a directory"),
        (["--out", str(a_file / "below")], r"--out '.*a_file/below' lies under '.*a_file', which is a file"),
        (["--out", "/proc/1/figures"], r"cannot create the directory '/proc/1/figures'"),
    ]
    for extra, message in cases:
        assert cli.main(["figures", "--quiet", *extra]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and re.search(message, err), err
    monkeypatch.setattr(cli.os, "access", lambda path, mode: False)
    assert cli.main(["figures", "--quiet", "--out", str(tmp_path / "ro")]) == 2
    assert re.search(r"the directory '.*ro' is not writable", capsys.readouterr().err)


def test_figures_out_must_not_be_empty(capsys):
    """``--out ""`` used to write into the current directory."""
    with pytest.raises(SystemExit) as exc:
        cli.main(["figures", "--out", ""])
    assert exc.value.code == 2
    assert "argument --out: expected a directory, got an empty path" in capsys.readouterr().err


@pytest.mark.parametrize("dpi", ["0", "-5", "many"])
def test_figures_dpi_must_be_a_positive_integer(dpi, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["figures", "--dpi", dpi])
    assert exc.value.code == 2
    assert "argument --dpi: expected an integer >= 1" in capsys.readouterr().err
