"""The Markdown tables of the benchmark records: seeds summarised, depths averaged, diverged seeds."""

from __future__ import annotations

import math

from titans_memory.tasks import report


def _rec(model, task, n, acc, seed, depth=None, pairs=None, chance=0.01):
    return dict(model=model, task=task, context_length=n, depth=depth, pairs=pairs, accuracy=acc,
                chance=chance, seed=seed)


RECORDS = [
    # lmm at 128: seed 0 depths 1.0 and 0.5 (mean 0.75), seed 1 both 1.0
    _rec("lmm", "passkey", 128, 1.0, 0, depth=0.0), _rec("lmm", "passkey", 128, 0.5, 0, depth=1.0),
    _rec("lmm", "passkey", 128, 1.0, 1, depth=0.0), _rec("lmm", "passkey", 128, 1.0, 1, depth=1.0),
    _rec("lmm", "passkey", 16384, 0.9, 0, depth=0.0), _rec("lmm", "passkey", 16384, 0.9, 0, depth=1.0),
    _rec("swa", "passkey", 128, 0.0, 0, depth=0.0), _rec("swa", "passkey", 128, 0.0, 0, depth=1.0),
    _rec("lmm-nomom", "passkey", 128, None, 0, depth=0.0),  # diverged in training
    _rec("lmm-nomom", "passkey", 128, None, 0, depth=1.0),
    _rec("lmm-nomom", "passkey", 128, 0.5, 1, depth=0.0), _rec("lmm-nomom", "passkey", 128, 0.5, 1, depth=1.0),
    _rec("lmm", "mqar", 64, 0.5, 0, pairs=4, chance=1 / 64), _rec("lmm", "mqar", 64, 0.25, 0, pairs=8, chance=1 / 64),
]


def test_per_seed_averages_depths_within_a_seed():
    data = report.per_seed(RECORDS, task="passkey")
    assert data[("lmm", 128)] == {0: 0.75, 1: 1.0}
    assert math.isnan(data[("lmm-nomom", 128)][0]) and data[("lmm-nomom", 128)][1] == 0.5


def test_cell_text():
    assert report.cell_text([0.75, 1.0]) == "87.5 [75-100]"
    assert report.cell_text([0.5]) == "50.0"
    assert report.cell_text([0.5, 0.5]) == "50.0"
    assert report.cell_text(None) == "-" and report.cell_text([]) == "-"
    assert report.cell_text([float("nan"), 0.5]) == "50.0 (1 div.)"
    assert report.cell_text([float("nan")] * 2) == "diverged"


def test_length_table():
    table = report.length_table(RECORDS, "passkey", window=32).splitlines()
    assert table[0] == "| model | 128 (4x) | 16,384 (512x) |"
    assert table[2] == "| lmm | 87.5 [75-100] | 90.0 |"
    assert table[3] == "| swa | 0.0 | - |"
    assert table[4] == "| lmm-nomom | 50.0 (1 div.) | - |"
    assert table[5] == "| chance | 1 | 1 |"


def test_mqar_and_ablation_tables():
    mqar = report.mqar_table(RECORDS).splitlines()
    assert mqar[0] == "| model | 4 pairs / 64 | 8 pairs / 64 |"
    assert mqar[2] == "| lmm | 50.0 | 25.0 |" and mqar[-1] == "| chance | 1.6 | 1.6 |"
    ablation = report.ablation_table(RECORDS, "lmm", ["lmm-nomom", "lmm-matrix"]).splitlines()
    assert ablation[0] == "| task | length | lmm | lmm-nomom |"  # absent ablations are left out
    assert "| passkey | 128 | 87.5 [75-100] | 50.0 (1 div.) |" in ablation
    assert "| mqar | 64 | 37.5 | - |" in ablation  # pair counts averaged


def test_depth_table_and_paper_comparison():
    depth = report.depth_table(RECORDS, "lmm").splitlines()
    assert depth[0] == "| depth | 128 | 16,384 |"
    assert depth[2] == "| 0 | 100.0 | 90.0 |" and depth[3] == "| 1 | 75.0 [50-100] | 90.0 |"
    paper = report.paper_comparison(RECORDS)
    assert "| lmm | passkey | 96.2 | lmm | 90.0 |" in paper
    assert "| mac | passkey | 98.4 | mac | - |" in paper
