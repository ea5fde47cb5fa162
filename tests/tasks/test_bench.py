"""The benchmark runner: the grid, the training stream, the budget plan, one job end to end on
hand-built models (perfect: accuracy 1; guessing: about chance; diverged: reported as such)."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
from torch import nn

from titans_memory.tasks import bench
from titans_memory.tasks.bench import (
    DEFAULT_MODELS,
    Job,
    MQARSettings,
    NiahSettings,
    evaluation_cells,
    plan,
    run_job,
    training_batches,
)
from titans_memory.tasks.longcontext import MODELS, TaskModelConfig, TrainResult, TrainSettings
from titans_memory.tasks.mqar import MQAR_VOCAB
from titans_memory.tasks.needles import VOCAB


def test_default_models_are_all_known_and_grouped():
    # the baseline (full attention), the variants (MAC's options) and ATLAS' memories (their
    # chunked form costs several LMMs) are run when named
    assert set(DEFAULT_MODELS) == {m for m, spec in MODELS.items() if spec.group not in ("baseline", "variant", "atlas")}
    assert [m for m in MODELS if MODELS[m].group == "atlas"] == list(bench.ATLAS)
    assert MQARSettings().models[0] == "attn" and set(MQARSettings().models) <= set(MODELS)
    assert [m for m in DEFAULT_MODELS if MODELS[m].group == "ablation"] == list(bench.ABLATIONS)
    assert [m for m in DEFAULT_MODELS if MODELS[m].group == "miras"] == list(bench.MIRAS)


def test_niah_cells():
    s = NiahSettings(kinds=("passkey", "multikey", "word"), lengths=(32, 128, 16384),
                     multikey_max_length=8192, depths=(0.0, 1.0))
    cells = evaluation_cells(s)
    passkey = [(c["context_length"], c["depth"]) for c in cells if c["task"] == "passkey"]
    assert passkey == [(n, d) for n in (32, 128, 16384) for d in (0.0, 1.0)]
    # multikey: 8 needles of 4 tokens do not fit in 32 tokens; 16,384 is above its maximum
    assert [c["context_length"] for c in cells if c["task"] == "multikey"] == [128]
    assert [(c["context_length"], c["depth"]) for c in cells if c["task"] == "word"] == [
        (32, None), (128, None), (16384, None)]


def test_mqar_cells():
    s = MQARSettings(lengths=(64, 128), pairs=(4, 32))
    cells = {(c["pairs"], c["context_length"]) for c in evaluation_cells(s)}
    assert cells == {(4, 64), (4, 128), (32, 128)}  # 32 pairs need 96 tokens at least


def test_training_stream_covers_kinds_and_lengths_and_is_seeded():
    s = NiahSettings(kinds=("passkey", "number", "word", "multikey"), train_lengths=(128, 256),
                     batch_tokens=512)
    first = [b for _, b in zip(range(8), training_batches(s, 0), strict=False)]
    combos = {(b.kind, b.tokens.shape[1]) for b in first}
    assert combos == {(k, n) for k in s.kinds for n in (128, 256)}  # each kind at each length
    assert all(b.tokens.shape[0] == 512 // b.tokens.shape[1] for b in first)
    again = [b for _, b in zip(range(8), training_batches(s, 0), strict=False)]
    other = next(training_batches(s, 1))
    assert all(torch.equal(a.tokens, b.tokens) for a, b in zip(first, again, strict=True))
    assert not torch.equal(first[0].tokens, other.tokens)
    # a length too short for a kind (8 keyed needles take 36 tokens) becomes the shortest that fits
    short = replace(s, kinds=("passkey", "multikey"), train_lengths=(32,))
    lengths = [(b.kind, b.tokens.shape[1]) for _, b in zip(range(2), training_batches(short, 0), strict=False)]
    assert lengths == [("passkey", 32), ("multikey", 36)]
    m = MQARSettings(train_pairs=(4, 8), train_lengths=(64,), batch_tokens=128)
    pairs = [b.targets.shape[1] for _, b in zip(range(4), training_batches(m, 0), strict=False)]
    assert pairs == [4, 8, 4, 8]


def test_plan_shares_the_budget_by_cost():
    s = NiahSettings(models=("swa", "lmm", "mac"), seeds=(0, 1), budget_minutes=10.0,
                     train_share=0.5, workers=2)
    jobs = plan(s)
    assert [(j.model, j.seed) for j in jobs] == [("mac", 0), ("mac", 1), ("lmm", 0), ("lmm", 1),
                                                 ("swa", 0), ("swa", 1)]
    limits = {j.model: j.train_time_limit for j in jobs}
    cost = bench._STEP_COST
    assert limits["mac"] / limits["lmm"] == pytest.approx(cost["mac"] / cost["lmm"])
    # the training time over all jobs is the training share of the budget on every worker
    assert sum(j.train_time_limit for j in jobs) == pytest.approx(10 * 60 * 0.5 * 2)
    assert all(j.train_time_limit is None for j in plan(replace(s, budget_minutes=None)))
    with pytest.raises(ValueError, match="unknown model"):
        plan(replace(s, models=("lmm", "gpt")))
    with pytest.raises(ValueError, match="at least one"):
        plan(replace(s, seeds=()))


def _tiny(settings):
    return replace(settings, models=("lmm",), seeds=(0,), budget_minutes=None, samples=3,
                   train=TrainSettings(steps=2, warmup=1))


def _fixed_model(monkeypatch, model, result: TrainResult | None = None):
    """``run_job`` gets ``model`` and a training that does nothing (or returns ``result``)."""
    monkeypatch.setattr(bench, "build_model", lambda name, cfg, seed: model)
    done = result or TrainResult(steps=2, seconds=0.0, losses=[1.0, 0.5], stopped_early=False)
    monkeypatch.setattr(bench, "train_on_answers", lambda *args, **kwargs: done)


def test_a_perfect_model_scores_one_in_every_cell(monkeypatch, oracle):
    s = _tiny(NiahSettings(kinds=("passkey", "multikey", "word"), lengths=(48, 300),
                           depths=(0.0, 0.5, 1.0), depth_samples=2))
    kinds_seen = []

    class PerKind(oracle):  # one oracle, told the kind of each batch by its tokens
        def __call__(self, tokens, cache=None):
            self.kind = "multikey" if torch.isin(tokens, torch.from_numpy(VOCAB.keys)).any() else (
                "word" if (tokens == VOCAB.SPACE).any() else "passkey")
            self.A = 3 if self.kind == "word" else 2
            kinds_seen.append(self.kind)
            return super().__call__(tokens, cache)

    _fixed_model(monkeypatch, PerKind(VOCAB.size, "passkey"))
    records = run_job(Job(s, "lmm", 0, None))
    assert len(records) == len(evaluation_cells(s)) == 2 * 3 + 2 + 2
    assert all(r["accuracy"] == 1.0 and not r["diverged"] for r in records)
    assert set(kinds_seen) == {"passkey", "multikey", "word"}
    passkey = [r for r in records if r["task"] == "passkey"]
    assert all(r["samples"] == 2 and r["chance"] == pytest.approx(0.01) for r in passkey)
    assert all(r["samples"] == 3 for r in records if r["task"] != "passkey")


def test_a_guessing_model_scores_chance_on_mqar(monkeypatch, guesser):
    s = replace(_tiny(MQARSettings(lengths=(256,), pairs=(32,))), samples=40)
    _fixed_model(monkeypatch, guesser(MQAR_VOCAB.size))
    (record,) = run_job(Job(s, "lmm", 0, None))
    n = record["samples"]
    assert n == 40 * 32 and record["chance"] == pytest.approx(1 / 64)
    assert abs(record["accuracy"] - 1 / 64) < 4 * math.sqrt((1 / 64) * (63 / 64) / n)


def test_a_diverged_model_has_no_accuracy(monkeypatch, oracle):
    s = _tiny(NiahSettings(lengths=(64,), depths=(0.5,)))
    diverged = TrainResult(steps=1, seconds=0.0, losses=[2.0], stopped_early=False, diverged=True)
    _fixed_model(monkeypatch, oracle(VOCAB.size, "passkey"), diverged)
    (record,) = run_job(Job(s, "lmm", 0, None))
    assert record["diverged"] and record["accuracy"] is None


def test_a_job_is_reproducible():
    s = replace(
        _tiny(NiahSettings(lengths=(40,), depths=(1.0,), depth_samples=4)),
        model=TaskModelConfig(dim=16, heads=2, window=8, chunk_size=4, persistent_tokens=1),
        batch_tokens=64,
    )
    a, b = run_job(Job(s, "mal", 5, None)), run_job(Job(s, "mal", 5, None))
    drop = ("train_seconds", "eval_seconds")
    assert [{k: v for k, v in r.items() if k not in drop} for r in a] == [
        {k: v for k, v in r.items() if k not in drop} for r in b]
    assert a[0]["train_steps"] == 2 and math.isfinite(a[0]["final_loss"])


def test_the_default_run_has_no_time_limit():
    """By default every job trains all its steps on a schedule by steps (no time cap)."""
    jobs = plan(NiahSettings(models=("swa", "lmm"), seeds=(0, 1)))
    assert len(jobs) == 4 and all(j.train_time_limit is None for j in jobs)


def test_the_in_process_runner_uses_one_thread_and_restores_the_count():
    before = torch.get_num_threads()
    torch.set_num_threads(2)  # as on a 2-core machine, whatever this one has
    try:
        seen = []
        bench.run_jobs([1, 2], {}, 1, run_here=lambda job: seen.append(torch.get_num_threads()) or [],
                       worker=None, init_worker=None)
        assert seen == [1, 1] and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


class _NaNModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.ones(()))

    def forward(self, tokens, cache=None):
        return self.w * torch.full((*tokens.shape, VOCAB.size), float("nan")), None


def test_run_job_records_a_nan_training_as_diverged(monkeypatch):
    s = _tiny(NiahSettings(lengths=(64,), depths=(0.5,)))
    monkeypatch.setattr(bench, "build_model", lambda name, cfg, seed: _NaNModel())
    (record,) = run_job(Job(s, "lmm", 0, None))
    assert record["diverged"] and record["accuracy"] is None and record["train_steps"] == 0


def test_mqar_plan_multiplies_widths_and_learning_rates():
    s = MQARSettings(models=("attn", "lmm"), seeds=(0,), widths=(16, 32), lrs=(1e-3, 1e-2))
    jobs = plan(s)
    assert {(j.model, j.width, j.lr) for j in jobs} == {
        (m, w, lr) for m in ("attn", "lmm") for w in (16, 32) for lr in (1e-3, 1e-2)}
    assert len(jobs) == 8 and all(j.train_time_limit is None for j in jobs)


def test_mqar_view_keeps_each_models_best_learning_rate():
    def rec(model, width, lr, acc, seed=0):
        return dict(model=model, width=width, lr=lr, seed=seed, accuracy=acc, task="mqar")

    records = [rec("lmm", 16, 1e-3, 0.2), rec("lmm", 16, 1e-2, 0.9), rec("lmm", 32, 1e-3, 0.7),
               rec("lmm", 32, 1e-2, 0.1), rec("lmm", 16, 1e-3, 0.5, seed=1), rec("lmm", 16, 1e-2, 0.4, seed=1)]
    view, names = bench.mqar_view(MQARSettings(models=("lmm",), widths=(16, 32)), records)
    assert names == ["lmm d16", "lmm d32"]
    assert sorted((r["model"], r["seed"], r["lr"]) for r in view) == [
        ("lmm d16", 0, 1e-2), ("lmm d16", 1, 1e-3), ("lmm d32", 0, 1e-3)]
    view, names = bench.mqar_view(MQARSettings(models=("lmm",), widths=(16,)), records[:2])
    assert names == ["lmm"] and [r["lr"] for r in view] == [1e-2]


def test_a_job_builds_its_width_and_trains_at_its_learning_rate(monkeypatch):
    s = replace(_tiny(MQARSettings()), lengths=(64,), pairs=(4,), model=TaskModelConfig(
        vocab_size=MQAR_VOCAB.size, dim=16, heads=2, window=8, chunk_size=4, persistent_tokens=1))
    seen = {}
    real = bench.train_on_answers

    def spy(model, batches, settings, **kw):
        seen["dim"], seen["lr"] = model.config.dim, settings.lr
        return real(model, batches, settings, **kw)

    monkeypatch.setattr(bench, "train_on_answers", spy)
    records = run_job(Job(s, "attn", 0, None, width=32, lr=1e-3))
    assert seen == {"dim": 32, "lr": 1e-3}
    assert {(r["width"], r["lr"]) for r in records} == {(32, 1e-3)}


def test_per_kind_trains_one_model_per_kind(monkeypatch):
    s = NiahSettings(models=("lmm", "swa"), seeds=(0,), kinds=("passkey", "word"), per_kind=True,
                     budget_minutes=10.0, train_share=0.5, workers=1)
    jobs = plan(s)
    assert sorted((j.model, j.kind) for j in jobs) == [(m, k) for m in ("lmm", "swa") for k in ("passkey", "word")]
    assert sum(j.train_time_limit for j in jobs) == pytest.approx(10 * 60 * 0.5)
    assert all(j.kind is None for j in plan(replace(s, per_kind=False)))
    seen = []
    real = bench.training_batches

    def spy(settings, seed):
        seen.append(settings.kinds)
        return real(settings, seed)

    monkeypatch.setattr(bench, "training_batches", spy)
    tiny = replace(_tiny(s), lengths=(32,), depths=(0.0,), per_kind=True, kinds=("passkey", "word"),
                   model=TaskModelConfig(dim=16, heads=2, window=8, chunk_size=4, persistent_tokens=1))
    records = run_job(Job(tiny, "lmm", 0, None, kind="word"))
    assert seen == [("word",)] and {r["task"] for r in records} == {"word"}
