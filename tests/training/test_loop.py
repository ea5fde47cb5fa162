"""The training loop: it learns, resumes exactly, carries the memory state where asked, accumulates exactly."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from titans_memory.models.lm import TitansLM
from titans_memory.training.checkpoint import CheckpointError
from titans_memory.training.config import TrainConfig
from titans_memory.training.data import (
    ByteTokenizer,
    file_corpus,
    held_out_tokens,
    open_corpus,
    train_token_counts,
)
from titans_memory.training.distributed import DistEnv
from titans_memory.training.evaluate import unigram_bits_per_byte
from titans_memory.training.loop import LMLoss, StreamBatches, WarmupCosine, train


def _weights(run_dir, step):
    return load_file(str(run_dir / "checkpoints" / f"step_{step:07d}" / "model.safetensors"))


@pytest.mark.slow  # 84-92 s on the 2-core machine under load (tiny LMM, 200 steps, 2 threads)
def test_200_steps_on_the_default_data_beat_the_unigram_baseline(tmp_path):
    """A tiny LMM on Python's stdlib (the default data): held-out bits per byte below the unigram's."""
    config = TrainConfig(
        arch="lmm", dim=32, heads=2, depth=2, window=64, segment=64, memory_chunk=16, persistent_tokens=2,
        seq_len=64, state_segments=2, batch_size=8, steps=200, lr=1e-2, warmup_steps=20,
        eval_every=200, eval_tokens=4096, eval_context=256, eval_batch=16, threads=2,
    )
    assert config.data == "stdlib"
    result = train(config, tmp_path / "run", progress=False)
    tok = ByteTokenizer()
    corpus = open_corpus(config.data, config.held_out_fraction)
    held = held_out_tokens(corpus, tok, config.eval_tokens + 1)
    unigram = unigram_bits_per_byte(train_token_counts(corpus, tok), held, config.eval_context, tok.byte_count)
    print(f"\n200 steps: held-out {result.final.bits_per_byte:.3f} bits/byte; unigram {unigram:.3f} bits/byte")
    assert result.final.tokens == 4096
    assert 4.0 < unigram < 5.5  # bytes of Python source: a unigram model needs about 4.7 bits
    assert result.final.bits_per_byte < unigram - 0.3


def test_resume_continues_exactly(tmp_path, kit):
    config = kit.config(steps=6)
    whole = train(config, tmp_path / "a", progress=False)
    first = train(config, tmp_path / "b", progress=False, stop_at_step=4)
    assert sorted(first.losses) == [1, 2, 3, 4] and first.step == 4
    rest = train(config, tmp_path / "b", progress=False, resume=True)
    assert sorted(rest.losses) == [5, 6]
    for step in (5, 6):
        assert rest.losses[step] == whole.losses[step]  # bit for bit
    assert [e["bits_per_byte"] for e in rest.evaluations] == [e["bits_per_byte"] for e in whole.evaluations]
    a, b = _weights(tmp_path / "a", 6), _weights(tmp_path / "b", 6)
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=0)


def test_resume_refuses_another_config_and_an_occupied_folder(tmp_path, kit):
    train(kit.config(steps=2), tmp_path / "r", progress=False)
    with pytest.raises(ValueError, match=r"already holds checkpoints; resume it"):
        train(kit.config(steps=2), tmp_path / "r", progress=False)
    with pytest.raises(CheckpointError, match=r"cannot resume .* different dim \(dim: 16 -> 32\)"):
        train(kit.config(steps=4, dim=32), tmp_path / "r", progress=False, resume=True)
    more = train(kit.config(steps=4), tmp_path / "r", progress=False, resume=True)  # steps may change
    assert sorted(more.losses) == [3, 4]


def test_carried_state_continues_the_stream_exactly(kit):
    """Segment 2 with the cache of segment 1 == the second half of one call over both (float64)."""
    config = kit.config()
    corpus = file_corpus(kit.corpus, config.held_out_fraction)
    torch.manual_seed(0)
    model = TitansLM(config.model_config(256)).double()
    batches = StreamBatches(corpus, ByteTokenizer(), config, DistEnv())
    one, two = batches.next(0), batches.next(0)  # (4, 33) each
    assert torch.equal(two[:, 0], one[:, -1])
    step = LMLoss(model)
    loss1, cache = step(one[:, :-1], one[:, 1:], None)
    loss2, cache2 = step(two[:, :-1], two[:, 1:], cache)
    assert all(not t.requires_grad for lc in cache2.layers for t in lc.tensors())  # detached: truncated BPTT
    inputs = torch.cat([one[:, :-1], two[:, :-1]], dim=1)
    targets = torch.cat([one[:, 1:], two[:, 1:]], dim=1)
    logits, _ = model(inputs)
    whole = F.cross_entropy(logits[:, 32:].flatten(0, 1), targets[:, 32:].flatten())
    torch.testing.assert_close(loss2, whole, rtol=0, atol=1e-12)
    fresh, _ = step(two[:, :-1], two[:, 1:], None)
    assert abs(float(fresh.detach()) - float(loss2.detach())) > 1e-6  # the carried memory changes the prediction


def test_state_segments_decides_whether_the_state_is_carried(tmp_path, kit):
    carried = train(kit.config(steps=2, state_segments=2), tmp_path / "c", progress=False)
    fresh = train(kit.config(steps=2, state_segments=1), tmp_path / "f", progress=False)
    assert carried.losses[1] == fresh.losses[1]  # the same first step
    assert carried.losses[2] != fresh.losses[2]  # step 2 reads on from step 1's memory, or not


def test_gradient_accumulation_equals_the_whole_batch(tmp_path, kit):
    one = train(kit.config(steps=2, grad_accum=1), tmp_path / "one", progress=False)
    two = train(kit.config(steps=2, grad_accum=2), tmp_path / "two", progress=False)
    assert one.losses[1] == pytest.approx(two.losses[1], rel=1e-6)
    a, b = _weights(tmp_path / "one", 2), _weights(tmp_path / "two", 2)
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-5, atol=1e-6)


def test_log_and_checkpoint_bookkeeping(tmp_path, kit):
    run = tmp_path / "run"
    result = train(kit.config(steps=6, keep_last=1), run, progress=False)
    lines = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == [2, 4, 6] == [e["step"] for e in result.evaluations]
    for r in lines:
        assert {"train_loss", "eval_loss", "bits_per_byte", "tokens_per_s", "lr", "tokens"} <= set(r)
        assert r["tokens"] == r["step"] * 4 * 32
    index = json.loads((run / "checkpoints" / "index.json").read_text())
    best_step = min(lines, key=lambda r: r["bits_per_byte"])["step"]
    assert index["latest"] == "step_0000006" and index["best"] == f"step_{best_step:07d}"
    kept = sorted(p.name for p in (run / "checkpoints").iterdir() if p.is_dir())
    assert kept == sorted({"step_0000006", f"step_{best_step:07d}"})
    state = json.loads((run / "checkpoints" / "step_0000006" / "trainer_state.json").read_text())
    assert state["step"] == 6 and len(state["data"]["positions"]) == 4 and state["exact_resume"]
    assert json.loads((run / "train_config.json").read_text()) == kit.config(steps=6, keep_last=1).to_dict()


def test_warmup_cosine_schedule():
    s = WarmupCosine(1.0, 10, 110, 0.1)
    assert s(0) == pytest.approx(0.1) and s(9) == pytest.approx(1.0)
    assert s(60) == pytest.approx(0.55) and s(110) == pytest.approx(0.1) and s(500) == pytest.approx(0.1)


@pytest.mark.parametrize("arch", ["mac", "mag", "mal", "swa"])
def test_every_architecture_trains_and_evaluates(tmp_path, kit, arch):
    result = train(kit.config(arch=arch, steps=2), tmp_path / arch, progress=False)
    assert result.final is not None and 0 < result.final.bits_per_byte < 9
    assert result.losses[2] < result.losses[1] + 0.5


def test_bf16_autocast_keeps_the_memory_in_float32(tmp_path, kit):
    """precision=bf16: attention and MLPs under bf16 autocast, every memory in float32."""
    from titans_memory.training.precision import memory_in_float32

    torch.manual_seed(0)
    model = memory_in_float32(TitansLM(kit.config(arch="mag").model_config(256)))
    seen = {}
    # (a forward hook that returns something replaces the output: these return None)
    model.blocks[0].memory.register_forward_hook(lambda m, a, out: seen.__setitem__("memory", out[0].dtype))
    model.blocks[0].mlp.register_forward_hook(lambda m, a, out: seen.__setitem__("mlp", out.dtype))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        model(torch.randint(0, 256, (2, 20)))
    assert seen == {"memory": torch.float32, "mlp": torch.bfloat16}
    fp32 = train(kit.config(steps=2), tmp_path / "fp32", progress=False)
    bf16 = train(kit.config(steps=2, precision="bf16"), tmp_path / "bf16", progress=False)
    assert bf16.losses[1] == pytest.approx(fp32.losses[1], rel=2e-2)
    assert bf16.losses[1] != fp32.losses[1]  # autocast did change the arithmetic
