"""The ``titans`` command: parser, registry, and ``titans figures`` end to end."""

from __future__ import annotations

import argparse

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
        (["presets", "nope"], r"unknown preset 'nope'; choose one of .*\btitans\b"),
        (["presets", "titans", "--set", "chunk_size=0"], r"chunk_size must be .*>= 1, got 0"),
        (
            ["presets", "titans", "--set", "colour=red"],
            r"unknown field 'colour'; fields: .*\bdim\b",
        ),
        (["presets", "titans", "--set", "dim"], r"--set expects FIELD=VALUE, got 'dim'"),
    ],
)
def test_presets_bad_input_is_a_clear_error(argv, message):
    with pytest.raises(SystemExit, match=message):
        cli.main(argv)
