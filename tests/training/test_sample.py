"""titans sample: the continuation of greedy decoding, streamed token by token; bad arguments."""

from __future__ import annotations

import pytest
import torch

from titans_memory import cli
from titans_memory.training.checkpoint import load_model
from titans_memory.training.loop import train
from titans_memory.training.sample import stream_tokens


@pytest.fixture(scope="module")
def run(tmp_path_factory, corpus_dir):
    from titans_memory.training.config import TrainConfig

    path = tmp_path_factory.mktemp("sample") / "run"
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    config = TrainConfig(arch="mag", dim=16, heads=2, depth=2, window=16, segment=16, memory_chunk=8,
                         seq_len=32, state_segments=2, batch_size=4, steps=2, eval_every=2, eval_tokens=128,
                         eval_context=64, data=str(corpus_dir))
    train(config, path, progress=False)
    torch.set_num_threads(before)
    return path


def test_greedy_sample_is_the_models_greedy_continuation(run, capsys):
    model, _, _ = load_model(run)
    prompt = "the memory "
    ids = torch.tensor([list(prompt.encode())])
    expected = model.generate(ids, 40, temperature=0)[0, ids.shape[1] :].tolist()
    assert cli.main(["sample", "--checkpoint", str(run), "--prompt", prompt, "--temperature", "0",
                     "--max-new-tokens", "40", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert out == prompt + bytes(expected).decode("utf-8", errors="replace") + "\n"


def test_tokens_stream_one_call_at_a_time(run):
    model, _, _ = load_model(run)
    calls = []
    handle = model.register_forward_hook(lambda m, args, out: calls.append(args[0].shape[1]))
    tokens = stream_tokens(model, list(b"abc"), 5, temperature=0)
    first = next(tokens)
    assert calls == [3]  # the prompt went through; nothing else yet
    rest = list(tokens)
    assert calls == [3, 1, 1, 1, 1] and len(rest) == 4
    handle.remove()
    assert [first, *rest] == model.generate(torch.tensor([list(b"abc")]), 5, temperature=0)[0, 3:].tolist()


def test_sampling_is_reproducible_by_seed(run, capsys):
    outs = []
    for seed in (1, 1, 2):
        cli.main(["sample", "--checkpoint", str(run), "--max-new-tokens", "30", "--seed", str(seed),
                  "--top-k", "20", "--top-p", "0.9", "--temperature", "1.5"])
        outs.append(capsys.readouterr().out)
    assert outs[0] == outs[1] and outs[0] != outs[2]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--temperature", "-1"], "--temperature must be >= 0"),
        (["--top-k", "0"], "--top-k must be >= 1"),
        (["--top-p", "1.5"], "--top-p must be in (0, 1]"),
        (["--max-new-tokens", "-3"], "--max-new-tokens must be >= 0"),
    ],
)
def test_bad_sampling_arguments(run, capsys, args, message):
    assert cli.main(["sample", "--checkpoint", str(run), *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err
