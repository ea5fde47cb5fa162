"""Benchmark records read back and merged (``titans bench report``), and the README's compact
tables: hand-built records, no training."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from titans_memory.tasks import report
from titans_memory.tasks.bench import (
    LR_SWEEP,
    MQARSettings,
    NiahSettings,
    mqar_view,
    quick,
    settings_to_dict,
)
from titans_memory.tasks.records import load_run, merge_runs, settings_from_dict


def _rec(model, task, n, acc, seed, *, depth=None, pairs=None, steps=800, chance=0.01, width=64, lr=3e-3):
    return dict(model=model, task=task, context_length=n, depth=depth, pairs=pairs, accuracy=acc, chance=chance,
                seed=seed, train_steps=steps, width=width, lr=lr)


PASSKEY = NiahSettings(models=("swa", "lmm", "mac"), lengths=(2048, 8192, 16384))
NUMBER_WORD = NiahSettings(models=("mac", "lmm"), kinds=("number", "word"), lengths=(2048, 16384),
                           train=replace(NiahSettings().train, steps=2000))

# passkey: lmm perfect; mac seed 0 at depths 0 / 1 = 0.4 / 0.6 (mean 0.5), seed 1 = 0.9 / 0.7 (0.8);
# swa 0.2 and 0.22 (steps cut to 700 for seed 1)
PASSKEY_RECORDS = (
    [_rec("lmm", "passkey", n, 1.0, s, depth=d) for n in PASSKEY.lengths for s in (0, 1) for d in (0.0, 1.0)]
    + [_rec("mac", "passkey", n, a, 0, depth=d) for n in PASSKEY.lengths for d, a in ((0.0, 0.4), (1.0, 0.6))]
    + [_rec("mac", "passkey", n, a, 1, depth=d) for n in PASSKEY.lengths for d, a in ((0.0, 0.9), (1.0, 0.7))]
    + [_rec("swa", "passkey", n, 0.2 + 0.02 * s, s, depth=d, steps=800 - 100 * s)
       for n in PASSKEY.lengths for s in (0, 1) for d in (0.0, 1.0)]
)
# number and word: mac 0.25 / 0.75 by seed (mean 50, range 25-75), lmm 1.0
NUMBER_WORD_RECORDS = [
    _rec(m, k, n, (1.0 if m == "lmm" else 0.25 + 0.5 * s), s, steps=2000)
    for m in NUMBER_WORD.models for k in NUMBER_WORD.kinds for n in NUMBER_WORD.lengths for s in (0, 1)
]


def _write(path, settings, records) -> str:
    path.write_text(json.dumps({"settings": settings_to_dict(settings), "wall_seconds": 1.0, "records": records}))
    return str(path)


@pytest.fixture
def two_files(tmp_path) -> list[str]:
    return [_write(tmp_path / "niah.json", PASSKEY, PASSKEY_RECORDS),
            _write(tmp_path / "niah_nw.json", NUMBER_WORD, NUMBER_WORD_RECORDS)]


@pytest.mark.parametrize("settings", [
    NiahSettings(), MQARSettings(), quick(NiahSettings()), quick(MQARSettings()),
    NiahSettings(kinds=("number", "word"), per_kind=True, budget_minutes=None),
    MQARSettings(widths=(16, 32), lrs=LR_SWEEP),
])
def test_settings_round_trip_through_json(settings):
    data = json.loads(json.dumps(settings_to_dict(settings)))
    assert settings_from_dict(data) == settings


def test_old_mqar_files_get_their_one_width_and_learning_rate(tmp_path):
    # written before widths and the sweep existed: no widths/lrs in the settings, none in the records
    data = settings_to_dict(MQARSettings(train=replace(MQARSettings().train, lr=1e-3)))
    del data["widths"], data["lrs"]
    records = [{k: v for k, v in _rec("lmm", "mqar", 128, 0.5, 0, pairs=4).items() if k not in ("width", "lr")}]
    (tmp_path / "old.json").write_text(json.dumps({"settings": data, "records": records}))
    run = load_run(tmp_path / "old.json")
    assert run.settings.widths == (64,) and run.settings.lrs == (1e-3,)
    assert run.records[0]["width"] == 64 and run.records[0]["lr"] == 1e-3


def test_merge_takes_the_union_and_keeps_every_record(two_files):
    settings, records = merge_runs([load_run(p) for p in two_files])
    assert settings.kinds == ("passkey", "number", "word")
    assert settings.models == ("swa", "lmm", "mac") and settings.lengths == (2048, 8192, 16384)
    assert len(records) == len(PASSKEY_RECORDS) + len(NUMBER_WORD_RECORDS)


def test_one_file_gives_back_its_own_settings(two_files):
    run = load_run(two_files[0])
    assert merge_runs([run]) == (PASSKEY, run.records)


def test_two_files_with_one_cell_are_refused(tmp_path, two_files):
    # a second run of mac that shares one passkey cell (length 2048, depth 0, seed 1) with the first file
    again = _write(tmp_path / "mac_again.json", replace(PASSKEY, models=("mac",), seeds=(1,)),
                   [_rec("mac", "passkey", 2048, 0.5, 1, depth=0.0, steps=2000)])
    with pytest.raises(ValueError, match=r"both hold the cell model mac, kind passkey, length 2048, depth 0, seed 1"):
        merge_runs([load_run(p) for p in (*two_files, again)])
    # another seed is another cell: merged
    other = _write(tmp_path / "mac_seed2.json", replace(PASSKEY, models=("mac",), seeds=(2,)),
                   [_rec("mac", "passkey", 2048, 0.5, 2, depth=0.0)])
    settings, _ = merge_runs([load_run(p) for p in (*two_files, other)])
    assert settings.seeds == (0, 1, 2)


def test_different_model_configurations_are_refused(tmp_path, two_files):
    wide = _write(tmp_path / "w.json", replace(NUMBER_WORD, model=replace(NUMBER_WORD.model, window=64)),
                  NUMBER_WORD_RECORDS)
    with pytest.raises(ValueError, match="window 32 vs 64"):
        merge_runs([load_run(two_files[0]), load_run(wide)])


def test_merged_tables_average_the_seeds(two_files):
    settings, records = merge_runs([load_run(p) for p in two_files])
    table = report.readme_niah_table(records, "passkey", ["swa", "lmm", "mac"]).splitlines()
    assert table[0] == "| model | 2,048 | 8,192 | 16,384 | steps |"
    assert table[2] == "| swa | 21.0 [20-22] | 21.0 [20-22] | 21.0 [20-22] | 700-800 |"
    assert table[3] == "| lmm | 100.0 | 100.0 | 100.0 | 800 |"
    # depths averaged within a seed (50 and 80), then the seeds: 65 [50-80]
    assert table[4] == "| mac | 65.0 [50-80] | 65.0 [50-80] | 65.0 [50-80] | 800 |"
    number = report.readme_niah_table(records, "number", ["swa", "lmm", "mac"]).splitlines()
    # a kind's own models and lengths (8,192 was not evaluated on numbers)
    assert number[0] == "| model | 2,048 | 16,384 | steps |"
    assert number[2:] == ["| lmm | 100.0 | 100.0 | 2000 |", "| mac | 50.0 [25-75] | 50.0 [25-75] | 2000 |"]
    full = report.length_table(records, "word", settings.models, window=32)
    assert "| swa |" not in full and "| mac | 50.0 [25-75] | 50.0 [25-75] |" in full


def test_paper_comparison_fills_number_and_word_from_merged_records(two_files):
    _, records = merge_runs([load_run(p) for p in two_files])
    rows = report.paper_comparison(records).splitlines()[2:]
    assert "| mac | passkey | 98.4 | mac | 65.0 [50-80] |" in rows
    assert "| mac | number | 97.4 | mac | 50.0 [25-75] |" in rows
    assert "| mac | word | 95.2 | mac | 50.0 [25-75] |" in rows
    # the paper gives the LMM's passkey only: ours for the other kinds beside "-"
    assert "| lmm | number | - | lmm | 100.0 |" in rows and "| lmm | word | - | lmm | 100.0 |" in rows
    # passkey records alone: no such rows
    assert not any("| - | lmm |" in row for row in report.paper_comparison(PASSKEY_RECORDS).splitlines())


def test_readme_mqar_table():
    settings = MQARSettings(models=("lmm", "swa"), widths=(64,), lengths=(128, 512), pairs=(4, 16))
    records = []
    for s in (0, 1):
        for lr, bonus in ((1e-3, 0.0), (3e-3, 0.1)):  # 3e-3 is better for both seeds: kept
            records += [
                _rec("lmm", "mqar", 128, 0.8 + bonus - 0.2 * s, s, pairs=4, lr=lr, steps=1500),
                _rec("lmm", "mqar", 128, 0.4 + bonus, s, pairs=16, lr=lr, steps=1500),
                _rec("lmm", "mqar", 512, 0.2 + bonus, s, pairs=4, lr=lr, steps=1500),
                _rec("lmm", "mqar", 512, 0.0 + bonus, s, pairs=16, lr=lr, steps=1500),
                _rec("swa", "mqar", 128, 0.1, s, pairs=4, lr=lr, steps=1400 + 100 * s),
                _rec("swa", "mqar", 128, 0.1, s, pairs=16, lr=lr, steps=1400 + 100 * s),
                _rec("swa", "mqar", 512, 0.1, s, pairs=4, lr=lr, steps=1400 + 100 * s),
                _rec("swa", "mqar", 512, 0.1, s, pairs=16, lr=lr, steps=1400 + 100 * s),
            ]
    view, names = mqar_view(replace(settings, lrs=(1e-3, 3e-3)), records)
    table = report.readme_mqar_table(view, names, 128).splitlines()
    assert table[0] == "| model | pairs averaged, 128 (trained) | pairs averaged, 512 | 16 pairs, 128 | steps | lr |"
    # lmm at 128: seed 0 (0.9 + 0.5) / 2 = 0.7, seed 1 (0.7 + 0.5) / 2 = 0.6: 65 [60-70]; at 512: 0.2 both
    assert table[2] == "| lmm | 65.0 [60-70] | 20.0 | 50.0 | 1500 | 0.003 |"
    # swa: both learning rates tie, the first one met is kept
    assert table[3] == "| swa | 10.0 | 10.0 | 10.0 | 1400-1500 | 0.001 |"


@pytest.mark.parametrize("content,message", [
    ("{", "is not JSON (line 1"),
    ("[1, 2]", "is not a benchmark record file"),
    (json.dumps({"settings": {"task": "lm"}, "records": []}), "holds titans bench lm records"),
    (json.dumps({"settings": {"task": "copy"}, "records": [{}]}), "task 'copy' is not one of niah, mqar"),
    (json.dumps({"settings": settings_to_dict(PASSKEY), "records": []}), "holds no records"),
    (json.dumps({"settings": settings_to_dict(PASSKEY), "records": [{"model": "lmm"}]}), "record 0 lacks task"),
    (json.dumps({"settings": {**settings_to_dict(PASSKEY), "lengths": 5}, "records": PASSKEY_RECORDS}),
     "settings.lengths: expected a list"),
    (json.dumps({"settings": settings_to_dict(MQARSettings()), "records": PASSKEY_RECORDS}),
     "record 0 is a passkey record in a mqar file"),
])
def test_bad_files_are_refused_with_one_line(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(ValueError) as info:
        load_run(path)
    assert message in str(info.value) and "\n" not in str(info.value) and "bad.json" in str(info.value)
