"""``titans bench report``: a run's tables again from its ``--json`` (byte for byte), records of
several files merged, the README's tables, and bad input (one line, exit status 2). No training:
the runs here are ``titans bench niah|mqar`` with the trainer replaced by hand-made records."""

from __future__ import annotations

import json
import shlex
import zlib
from dataclasses import replace
from pathlib import Path

import pytest

from titans_memory import cli
from titans_memory.cli.bench import command_for, settings_from_flags
from titans_memory.tasks import bench as bench_tasks
from titans_memory.tasks.bench import settings_to_dict

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _fake_run_benchmark(settings, *, progress=True):
    """Records of every grid cell, as the runner lays them out, with accuracies from a hash of the
    cell (a diverged model: accuracy None, loss NaN, as a real run writes them)."""
    records = []
    widths = getattr(settings, "widths", (settings.model.dim,))
    lrs = getattr(settings, "lrs", (settings.train.lr,))
    for m in settings.models:
        for s in settings.seeds:
            for w in widths:
                for lr in lrs:
                    diverged = m == "lmm-nomom" and s == 1
                    for cell in bench_tasks.evaluation_cells(settings):
                        h = zlib.crc32(repr((m, s, w, lr, *cell.values())).encode())
                        records.append(dict(
                            model=m, **cell, accuracy=None if diverged else (h % 1000) / 999, chance=0.01,
                            samples=10, train_seconds=1.5, train_steps=settings.train.steps - h % 3,
                            final_loss=float("nan") if diverged else 0.25, diverged=diverged, seed=s,
                            width=w, lr=lr, eval_seconds=0.5,
                        ))
    return records


@pytest.fixture
def fake_runs(monkeypatch):
    monkeypatch.setattr(bench_tasks, "run_benchmark", _fake_run_benchmark)


def _bench(tmp_path, name: str, *argv: str) -> tuple:
    json_path, out = tmp_path / f"{name}.json", tmp_path / f"{name}_out"
    assert cli.main(["bench", *argv, "--json", str(json_path), "--out", str(out), "--quiet"]) == 0
    return json_path, out


@pytest.mark.parametrize("argv", [
    ["niah", "--quick", "--models", "swa,lmm,mac,lmm-nomom", "--seeds", "0,1", "--kinds", "passkey,number"],
    ["niah", "--models", "lmm,mac,lmm-deltanet,swa", "--seeds", "0,1"],  # lengths to 16K: beside the paper
    ["mqar", "--quick", "--models", "attn,lmm,lmm-nomom", "--widths", "16,32", "--lr-sweep"],
])
def test_report_reproduces_the_runs_tables_byte_for_byte(tmp_path, fake_runs, capsys, argv):
    json_path, run_out = _bench(tmp_path, "run", *argv)
    run_stdout = capsys.readouterr().out
    report_out = tmp_path / "report_out"
    assert cli.main(["bench", "report", str(json_path), "--out", str(report_out)]) == 0
    name = f"{argv[0]}_tables.md"
    assert (report_out / name).read_bytes() == (run_out / name).read_bytes()
    assert capsys.readouterr().out == run_stdout
    figures = sorted(p.name for p in run_out.glob("*.png"))
    assert figures and sorted(p.name for p in report_out.glob("*.png")) == figures
    assert all((report_out / f).read_bytes().startswith(PNG_MAGIC) for f in figures)


def test_report_merges_runs_of_other_kinds(tmp_path, fake_runs, capsys):
    passkey, _ = _bench(tmp_path, "passkey", "niah", "--models", "swa,lmm,mac", "--seeds", "0,1")
    kinds, _ = _bench(tmp_path, "kinds", "niah", "--models", "mac,lmm", "--seeds", "0,1", "--kinds", "number,word",
                      "--per-kind", "--steps", "900")
    capsys.readouterr()
    assert cli.main(["bench", "report", str(passkey), str(kinds), "--out", str(tmp_path / "both")]) == 0
    tables = (tmp_path / "both" / "niah_tables.md").read_text()
    assert "### passkey" in tables and "### number" in tables and "### word" in tables
    comparison = tables.split("### Titans' S-NIAH at 16K beside ours")[1]
    # the mac rows of the number and word needles hold our numbers, not "-"
    number_row = next(line for line in comparison.splitlines() if line.startswith("| mac | number | 97.4 |"))
    assert not number_row.endswith("| - |")
    capsys.readouterr()
    assert cli.main(["bench", "report", str(passkey), str(kinds), "--readme"]) == 0
    text = capsys.readouterr().out
    lines = text.splitlines()
    head = [line for line in lines if line.startswith("**")]
    assert [h.split("**")[1] for h in head] == ["passkey", "number", "word"]
    # each table names its files and the command that made them (defaults left out)
    sources = [h.split("Made by")[0] for h in head]
    assert f"`{passkey}` (`titans bench niah --models swa,lmm,mac`)" in sources[0] and str(kinds) not in sources[0]
    assert str(passkey) not in sources[1] and sources[1].split("records:")[1] == sources[2].split("records:")[1]
    assert f"`{kinds}` (`titans bench niah --models mac,lmm --kinds number,word --per-kind --steps 900`)" in head[1]
    assert f"titans bench report {passkey} {kinds} --readme" in head[0]
    # rows in the order of MODELS (lmm before mac), one per model; steps as recorded
    first = lines.index(head[1]) + 4  # after the line, a blank line, the header and its rule
    rows = [line.split(" | ")[0] for line in lines[first:] if line.startswith("|")][:3]
    assert lines[first - 2].startswith("| model | 2,048 | 8,192 | 16,384 | steps |")
    assert rows[:2] == ["| lmm", "| mac"] and not lines[first + 2].startswith("|")


@pytest.mark.parametrize("argv", [
    ["niah"],
    ["niah", "--quick", "--models", "swa,lmm", "--seeds", "3", "--steps", "8", "--budget-minutes", "60", "--workers", "1"],
    ["niah", "--kinds", "number,word", "--per-kind", "--train-lengths", "48,96"],
    ["mqar", "--quick", "--models", "attn", "--widths", "16,32", "--lr-sweep", "--steps", "2"],
    ["mqar", "--seeds", "0", "--budget-minutes", "12.5"],
    ["niah", "--kinds", "number", "--train-lengths", "32,128,512", "--steps", "2000", "--lr", "0.001"],
    ["mqar", "--quick", "--lr", "0.01"],
    ["niah", "--kinds", "number", "--steps", "4000", "--samples", "64"],
    ["mqar", "--samples", "8"],
])
def test_the_command_written_makes_the_recorded_settings(argv):
    args = cli.build_parser().parse_args(["bench", *argv])
    settings = settings_from_flags(args.benchmark, args)
    command, rest = command_for(json.loads(json.dumps(settings_to_dict(settings))))
    assert rest == []
    again = cli.build_parser().parse_args(shlex.split(command)[1:])
    assert settings_from_flags(again.benchmark, again) == settings
    assert len(shlex.split(command)) <= len(argv) + 3  # no flag that only repeats a default


def test_lr_sets_the_peak_learning_rate_of_every_model():
    def settings(*argv):
        args = cli.build_parser().parse_args(["bench", *argv])
        return settings_from_flags(args.benchmark, args)

    assert settings("niah", "--lr", "1e-3").train.lr == 1e-3
    mqar = settings("mqar", "--lr", "1e-2")
    assert mqar.lrs == (1e-2,) and mqar.train.lr == 1e-2  # the jobs train at lrs, the records say train.lr
    assert bench_tasks.plan(replace(mqar, models=("attn",), seeds=(0,)))[0].lr == 1e-2


def test_samples_sets_the_sequences_of_every_evaluated_cell():
    args = cli.build_parser().parse_args(["bench", "niah", "--kinds", "passkey,number", "--samples", "5"])
    settings = settings_from_flags(args.benchmark, args)
    assert settings.samples == settings.depth_samples == 5
    cells = bench_tasks.evaluation_cells(settings)
    assert {bench_tasks._cell_samples(settings, c) for c in cells} == {5}
    args = cli.build_parser().parse_args(["bench", "mqar", "--samples", "3"])
    assert settings_from_flags(args.benchmark, args).samples == 3


def test_a_models_needles_at_two_learning_rates_are_not_mixed(tmp_path, fake_runs, capsys):
    fast, _ = _bench(tmp_path, "fast", "niah", "--quick", "--models", "lmm,mag", "--seeds", "0", "--kinds", "number")
    slow, _ = _bench(tmp_path, "slow", "niah", "--quick", "--models", "mag", "--seeds", "0", "--kinds", "number",
                     "--lr", "1e-3")
    other, _ = _bench(tmp_path, "other", "niah", "--quick", "--models", "mal", "--seeds", "0", "--kinds", "number",
                      "--lr", "1e-3")
    capsys.readouterr()
    # the same model at two learning rates: refused, naming both files (one line, status 2)
    assert cli.main(["bench", "report", str(fast), str(slow), "--readme"]) == 2
    err = capsys.readouterr().err.strip()
    assert "mag trained at learning rate 0.003" in err and str(slow) in err and "\n" not in err
    # models at different learning rates: one row each, with its learning rate
    assert cli.main(["bench", "report", str(fast), str(other), "--readme", "--models", "lmm,mal"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("|")]
    assert rows[0].endswith("| steps | lr |")
    assert rows[2].startswith("| lmm |") and rows[2].endswith("| 0.003 |")
    assert rows[3].startswith("| mal |") and rows[3].endswith("| 0.001 |")
    # one learning rate for all: no such column (the README's tables as before)
    assert cli.main(["bench", "report", str(fast), "--readme"]) == 0
    assert "| lr |" not in capsys.readouterr().out


def test_settings_no_flag_makes_are_listed():
    data = settings_to_dict(bench_tasks.NiahSettings())
    data["samples"] = 7
    command, rest = command_for(data)
    assert command == "titans bench niah" and rest == ["samples=7"]


def _write(path, content) -> str:
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return str(path)


def test_bad_input_is_one_line_and_status_2(tmp_path, fake_runs, capsys):
    niah, _ = _bench(tmp_path, "niah", "niah", "--quick", "--models", "lmm", "--seeds", "0")
    mqar, _ = _bench(tmp_path, "mqar", "mqar", "--quick", "--models", "lmm", "--seeds", "0")
    niah_again, _ = _bench(tmp_path, "again", "niah", "--quick", "--models", "lmm,swa", "--seeds", "0", "--steps", "9")
    lm = _write(tmp_path / "lm.json", {"settings": {"task": "lm"}, "records": [{}]})
    cases = [
        ([str(tmp_path / "missing.json")], "does not exist"),
        ([str(tmp_path)], "is a directory"),
        ([_write(tmp_path / "text.json", "not json")], "is not JSON"),
        ([_write(tmp_path / "other.json", {"rows": []})], "is not a benchmark record file"),
        ([lm], "holds titans bench lm records"),
        ([str(niah), str(mqar)], "holds niah records and"),
        ([str(niah), str(niah_again)], "both hold the cell model lmm, kind passkey, length 32, depth 0, seed 0"),
        ([str(niah), str(niah)], "is given twice"),
        ([str(niah), "--out", _write(tmp_path / "file.txt", "x")], "is a file, not a directory"),
    ]
    for argv, message in cases:
        capsys.readouterr()
        assert cli.main(["bench", "report", *argv]) == 2, argv
        captured = capsys.readouterr()
        err = captured.err.strip().splitlines()
        assert len(err) == 1 and message in err[0] and err[0].startswith("titans bench: error:"), (argv, err)
        assert captured.out == ""


def test_report_keeps_the_models_asked_for(tmp_path, fake_runs, capsys):
    json_path, _ = _bench(tmp_path, "run", "niah", "--models", "swa,lmm,mac", "--seeds", "0,1")
    capsys.readouterr()
    assert cli.main(["bench", "report", str(json_path), "--readme", "--models", "mac,swa"]) == 0
    text = capsys.readouterr().out
    rows = [line.split(" | ")[0] for line in text.splitlines() if line.startswith("| ") and not line.startswith("| model")]
    assert rows == ["| swa", "| mac"]  # in the order of MODELS, as without --models
    assert f"titans bench report {json_path} --readme --models mac,swa" in text
    assert cli.main(["bench", "report", str(json_path), "--models", "lmm"]) == 0
    full = capsys.readouterr().out.split("### Titans' S-NIAH")[0]  # the paper's table names its models
    assert "| lmm |" in full and "| mac |" not in full and "| swa |" not in full
    assert cli.main(["bench", "report", str(json_path), "--models", "lmm,mag"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--models: no records of mag; the records hold swa, lmm, mac" in err[0]


def test_help_states_the_settings_defaults():
    """The defaults --help names are those of the settings (they had gone stale once)."""
    from titans_memory.tasks.bench import MQARSettings, NiahSettings

    niah, mqar = NiahSettings(), MQARSettings()
    helps = {a.dest: a.help for a in cli.build_parser()._subparsers._group_actions[0].choices["bench"]
             ._subparsers._group_actions[0].choices["mqar"]._actions}

    def csv(values):
        return ",".join(map(str, values))

    assert f"(default: {csv(mqar.widths)})" in helps["widths"]
    assert f"niah {csv(niah.train_lengths)}; mqar {csv(mqar.train_lengths)})" in helps["train_lengths"]
    assert f"niah {niah.train.steps}, mqar {mqar.train.steps})" in helps["steps"]
    assert "(default: none;" in helps["budget_minutes"]
    assert float(helps["lr"].split("(default: ")[1].rstrip(")")) == niah.train.lr == mqar.train.lr
    assert f"default: niah {niah.samples}, passkey {niah.depth_samples}; mqar {mqar.samples})" in helps["samples"]
    assert niah.budget_minutes is None and mqar.budget_minutes is None


def test_report_needs_a_file():
    with pytest.raises(SystemExit) as exc:
        cli.main(["bench", "report"])
    assert exc.value.code == 2


ROOT = Path(__file__).resolve().parents[1]
# the tables docs/evidence.md includes, and the record file(s) the commands beside them wrote
# (several: the tables that ``titans bench report`` made of their records merged)
INCLUDED: dict[str, str | tuple[str, ...]] = {
    "figures/longcontext/niah_tables.md": "benchmarks/results/niah.json",
    "figures/longcontext/mqar_tables.md": "benchmarks/results/mqar.json",
    "figures/longcontext/mac_2000/niah_tables.md": "benchmarks/results/niah_mac_2000.json",
    "figures/longcontext/mac_curriculum/niah_tables.md": "benchmarks/results/niah_mac_curriculum.json",
    "figures/longcontext/mac_seeds/niah_tables.md": "benchmarks/results/niah_mac_seeds.json",
    "figures/longcontext/kinds/niah_tables.md": "benchmarks/results/niah_kinds.json",
    "figures/longcontext/multikey/niah_tables.md": "benchmarks/results/niah_multikey.json",
    "figures/longcontext/multikey_64_128/niah_tables.md": "benchmarks/results/niah_multikey_64_128.json",
    "figures/longcontext/atlas/niah_tables.md": "benchmarks/results/niah_atlas.json",  # docs/atlas.md
    "figures/longcontext/number_curriculum/niah_tables.md": "benchmarks/results/niah_number_curriculum.json",
    "figures/longcontext/number_1600/niah_tables.md": "benchmarks/results/niah_number_1600.json",
    "figures/longcontext/number_2048/niah_tables.md": "benchmarks/results/niah_number_2048.json",
    "figures/longcontext/number_mag_mal_1e-3/niah_tables.md": "benchmarks/results/niah_number_mag_mal_1e-3.json",
    "figures/longcontext/number_lmm_4000/niah_tables.md": "benchmarks/results/niah_number_lmm_4000.json",
    "figures/longcontext/number_lmm_6000/niah_tables.md": "benchmarks/results/niah_number_lmm_6000.json",
    "figures/longcontext/number_lmm_4000_s64/niah_tables.md": "benchmarks/results/niah_number_lmm_4000_s64.json",
    "figures/longcontext/number_lmm_4096/niah_tables.md": "benchmarks/results/niah_number_lmm_4096.json",
    "figures/longcontext/number_lmm_1e-2/niah_tables.md": "benchmarks/results/niah_number_lmm_1e-2.json",
    "figures/longcontext/number_per_model/niah_tables.md": (
        "benchmarks/results/niah_number_lmm_4000_s64.json", "benchmarks/results/niah_number_mag_mal_1e-3.json"),
    "figures/longcontext/mqar_atlas/mqar_tables.md": "benchmarks/results/mqar_atlas.json",
}


@pytest.mark.parametrize("tables,records", sorted(INCLUDED.items()))
def test_the_committed_tables_are_those_of_their_records(tables, records):
    from titans_memory.cli.bench import bench_tables
    from titans_memory.tasks.records import load_run, merge_runs

    files = (records,) if isinstance(records, str) else records
    settings, recs = merge_runs([load_run(ROOT / f) for f in files])
    assert (ROOT / tables).read_text("utf-8") == bench_tables(settings, recs) + "\n", (
        f"regenerate: titans bench report {' '.join(files)} --out {Path(tables).parent}"
    )
