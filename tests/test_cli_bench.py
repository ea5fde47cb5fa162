"""``titans bench niah`` and ``titans bench mqar`` end to end (quick-sized), and their bad input."""

from __future__ import annotations

import json

import pytest

from titans_memory import cli

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
RECORD_KEYS = {"model", "task", "context_length", "depth", "accuracy", "chance", "train_seconds", "seed"}


def _run(tmp_path, bench: str, *extra: str) -> dict:
    path = tmp_path / f"{bench}.json"
    argv = ["bench", bench, "--quick", "--models", "swa,lmm", "--seeds", "3", "--workers", "1",
            "--steps", "8", "--budget-minutes", "60", "--json", str(path), "--out", str(tmp_path / "out"),
            "--quiet", *extra]
    assert cli.main(argv) == 0
    return json.loads(path.read_text())


@pytest.mark.slow  # trains two models: ~9 s under load
def test_niah_quick_end_to_end(tmp_path, capsys):
    data = _run(tmp_path, "niah", "--kinds", "passkey,number,word,multikey", "--train-lengths", "48,96")
    records = data["records"]
    assert data["settings"]["seeds"] == [3] and data["settings"]["train"]["steps"] == 8
    assert data["settings"]["train_lengths"] == [48, 96]
    assert {r["model"] for r in records} == {"swa", "lmm"}
    assert all(RECORD_KEYS <= set(r) and r["seed"] == 3 and r["train_steps"] == 8 for r in records)
    assert {r["task"] for r in records} == {"passkey", "number", "word", "multikey"}
    # passkey at every depth and length of the quick grid; the others at a drawn depth
    passkey = {(r["context_length"], r["depth"]) for r in records if r["task"] == "passkey" and r["model"] == "lmm"}
    assert passkey == {(n, d) for n in (32, 128, 512) for d in (0.0, 0.5, 1.0)}
    assert all(r["depth"] is None for r in records if r["task"] != "passkey")
    assert all(0.0 <= r["accuracy"] <= 1.0 for r in records)
    assert {r["chance"] for r in records if r["task"] == "passkey"} == {0.01}
    out = tmp_path / "out"
    for name in ("niah_accuracy.png", "niah_depth.png"):
        assert (out / name).read_bytes().startswith(PNG_MAGIC)
    tables = (out / "niah_tables.md").read_text()
    assert "### passkey" in tables and "| lmm |" in tables
    assert "### passkey" in capsys.readouterr().out


@pytest.mark.slow  # trains two models: ~14 s under load
def test_mqar_quick_end_to_end(tmp_path):
    records = _run(tmp_path, "mqar")["records"]
    cells = {(r["pairs"], r["context_length"]) for r in records if r["model"] == "swa"}
    assert cells == {(4, 64), (4, 128), (8, 64), (8, 128)}
    assert all(r["task"] == "mqar" and r["chance"] == pytest.approx(1 / 64) for r in records)
    assert (tmp_path / "out" / "mqar_pairs.png").read_bytes().startswith(PNG_MAGIC)


@pytest.mark.slow  # trains four small models
def test_mqar_widths_and_lr_sweep(tmp_path):
    data = _run(tmp_path, "mqar", "--models", "attn", "--widths", "16,32", "--lr-sweep", "--steps", "2")
    records = data["records"]
    assert {(r["width"], r["lr"]) for r in records} == {(w, lr) for w in (16, 32) for lr in (1e-3, 3e-3, 1e-2)}
    tables = (tmp_path / "out" / "mqar_tables.md").read_text()
    assert "best of learning rates" in tables and "| attn d16 |" in tables and "| attn d32 |" in tables


def test_bench_lists_the_models(capsys):
    from titans_memory.tasks.longcontext import MODELS

    assert cli.main(["bench", "niah", "--list"]) == 0
    assert [line.split()[0] for line in capsys.readouterr().out.splitlines()] == list(MODELS)


@pytest.mark.parametrize(
    "argv,message",
    [
        (["bench", "niah", "--models", "lmm,gpt"], "unknown model(s) gpt"),
        (["bench", "mqar", "--seeds", "1,x"], "comma-separated integers"),
        (["bench", "niah", "--seeds", "1,1"], "distinct"),
        (["bench", "niah", "--kinds", "passkey,haystack"], "unknown kind(s) haystack"),
        (["bench", "niah", "--budget-minutes", "0"], "number > 0"),
        (["bench", "niah", "--steps", "-3"], "integer >= 1"),
        (["bench", "niah", "--train-lengths", "64,x"], "comma-separated integers"),
        (["bench", "mqar", "--train-lengths", "0"], "integers >= 1"),
        (["bench", "niah", "--json", "/nonexistent/dir/x.json"], "does not exist"),
        (["bench", "mqar", "--widths", "64,30"], "multiple of 4"),
        (["bench", "niah", "--per-kind"], "needs several --kinds"),
        (["bench", "mqar", "--lr", "1e-3", "--lr-sweep"], "exclude each other"),
        (["bench", "niah", "--lr", "0"], "number > 0"),
    ],
)
def test_bad_input_is_one_line_and_status_2(argv, message, capsys):
    try:
        status = cli.main(argv)
    except SystemExit as exc:  # argparse's own errors
        status = exc.code
    assert status == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert message in err[-1] and "Traceback" not in "\n".join(err)


def test_bench_needs_a_benchmark():
    with pytest.raises(SystemExit) as exc:
        cli.main(["bench"])
    assert exc.value.code == 2
