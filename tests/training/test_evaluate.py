"""Evaluation: bits per byte from first principles, piece size invariance, the context curve, titans eval."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from titans_memory import cli
from titans_memory.models.lm import TitansLM
from titans_memory.training.evaluate import context_curve, evaluate, unigram_bits_per_byte
from titans_memory.training.loop import train


@pytest.fixture
def model(kit):
    torch.manual_seed(0)
    return TitansLM(kit.config(arch="mal").model_config(256)).double()


def _tokens(n, seed=0):
    return np.random.default_rng(seed).integers(0, 256, n).astype(np.int64)


def test_bits_per_byte_is_the_cross_entropy_in_bits(model):
    tokens = _tokens(129)
    result = evaluate(model, tokens, 64, byte_count=len, batch=2, piece=64)
    windows = torch.as_tensor(np.stack([tokens[:65], tokens[64:129]]))
    logits, _ = model(windows[:, :-1])
    nll = F.cross_entropy(logits.flatten(0, 1), windows[:, 1:].flatten(), reduction="sum").item()
    assert result.tokens == 128 and result.bytes == 128
    assert result.loss == pytest.approx(nll / 128, rel=1e-12)
    assert result.bits_per_byte == pytest.approx(nll / 128 / math.log(2), rel=1e-12)


def test_piece_and_batch_sizes_do_not_change_the_result(model):
    tokens = _tokens(3 * 96 + 1, seed=1)
    ref = evaluate(model, tokens, 96, byte_count=len, batch=3, piece=96)
    for batch, piece in [(1, 7), (2, 32), (3, 1000)]:
        got = evaluate(model, tokens, 96, byte_count=len, batch=batch, piece=piece)
        assert got.loss == pytest.approx(ref.loss, rel=1e-12)


def test_context_curve_scores_the_same_tokens(model):
    tokens = _tokens(257, seed=2)
    curve = context_curve(model, tokens, [32, 64, 256], byte_count=len, batch=4, piece=50)
    assert [r.tokens for r in curve] == [256, 256, 256]
    assert [r.context for r in curve] == [32, 64, 256]
    assert len({round(r.loss, 12) for r in curve}) == 3  # the context changes the predictions


def test_unigram_baseline_matches_its_formula():
    counts = np.zeros(256, dtype=np.int64)
    counts[[1, 2]] = [3, 1]
    tokens = np.array([9, 1, 2, 1, 1], dtype=np.int64)  # the first token is never scored
    probs = (counts + 1) / (4 + 256)
    expected = -(2 * np.log(probs[1]) + np.log(probs[2]) + np.log(probs[1])) / 4 / math.log(2)
    assert unigram_bits_per_byte(counts, tokens, 4, len) == pytest.approx(expected)


def test_too_few_tokens_is_an_error(model):
    with pytest.raises(ValueError, match=r"needs at least 65 held-out tokens for context 64"):
        evaluate(model, _tokens(30), 64, byte_count=len)


def test_titans_eval_reports_each_context(tmp_path, kit, capsys):
    run = tmp_path / "run"
    train(kit.config(steps=2), run, progress=False)
    capsys.readouterr()
    out = tmp_path / "eval.json"
    code = cli.main(["eval", "--checkpoint", str(run), "--contexts", "32,64", "--tokens", "200",
                     "--json", "--out", str(out), "--threads", "1"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report == json.loads(out.read_text())
    assert [r["context"] for r in report["results"]] == [32, 64]
    assert all(r["tokens"] == 192 for r in report["results"])  # 200 rounded down to a multiple of 64
    assert report["data"] == str(kit.corpus) and report["unigram_bits_per_byte"] > 0
    assert cli.main(["eval", "--checkpoint", str(run), "--contexts", "32", "--tokens", "64"]) == 0
    table = capsys.readouterr().out
    assert "bits/byte" in table and "unigram baseline" in table


def test_titans_eval_bad_arguments(tmp_path, kit, capsys):
    run = tmp_path / "run"
    train(kit.config(steps=2), run, progress=False)
    with pytest.raises(SystemExit) as exc:  # argparse: usage line and exit 2
        cli.main(["eval", "--checkpoint", str(run), "--contexts", "0,5"])
    assert exc.value.code == 2
    assert "--contexts: expected comma-separated integers >= 1" in capsys.readouterr().err
    assert cli.main(["eval", "--checkpoint", str(run), "--contexts", "64", "--tokens", "10"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--tokens (10) must be at least the least common multiple" in err
