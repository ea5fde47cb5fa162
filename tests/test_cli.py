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
}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_figures_writes_the_five_pngs(tmp_path, capsys):
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
    with pytest.raises(ValueError, match="already registered"):
        cli.register(cli.Subcommand("echo", "again", configure, run))
