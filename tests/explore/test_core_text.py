"""The text tab's computation: the core's own surprise and gates, byte by byte, and checkpoints."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch

from titans_memory import NeuralMemory, preset
from titans_memory.explore import core_text as ct
from titans_memory.explore.texts import ExploreInputError
from titans_memory.tasks import recall_vs_age

TEXT = "the cat sat. the cat sat. Việt!"


def _fresh(name: str) -> NeuralMemory:
    torch.manual_seed(ct.TEXT_SEED)
    return NeuralMemory(preset(name, dim=ct.TEXT_DIM)).eval()


def _library_signals(memory: NeuralMemory, embedding: torch.Tensor, text: str):
    x = embedding[list(text.encode("utf-8"))].unsqueeze(0)  # (1, T, dim)
    with torch.no_grad():
        surprise, _ = memory.surprise(x)
        gates = memory.gates(x)
    return surprise, gates


def test_byte_embedding_is_fixed():
    torch.manual_seed(1)
    a = ct.byte_embedding()
    torch.manual_seed(2)
    b = ct.byte_embedding()
    assert a.shape == (256, ct.TEXT_DIM)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.equal(a, ct.byte_embedding(seed=1))


def test_text_bytes():
    assert ct.text_bytes("ab") == b"ab"
    assert len(ct.text_bytes("Việt")) == 6  # V, i, ệ (3 bytes), t
    for empty in ("", "  \n"):
        with pytest.raises(ExploreInputError) as err:
            ct.text_bytes(empty)
        assert err.value.code == "err_empty_text"
    with pytest.raises(ExploreInputError) as err:
        ct.text_bytes("ệ" * (ct.MAX_TEXT_BYTES // 3 + 1))  # few characters, too many bytes
    assert err.value.code == "err_text_too_long"
    assert f"at most {ct.MAX_TEXT_BYTES}" in str(err.value)
    with pytest.raises(TypeError, match="text must be a str"):
        ct.text_bytes(b"ab")  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["titans", "deltanet", "yaad"])
def test_signals_are_the_memory_s_own(name):
    loaded = ct.preset_memory(name)
    assert not loaded.trained and loaded.label == name
    memory = _fresh(name)
    for a, b in zip(memory.state_dict().values(), loaded.memory.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)  # the same fresh memory, seed 0

    signals = ct.text_signals(loaded, TEXT)
    surprise, gates = _library_signals(memory, ct.byte_embedding(), TEXT)
    n = len(TEXT.encode("utf-8"))
    assert signals.data == TEXT.encode("utf-8") and signals.surprise.shape == (n,)
    np.testing.assert_array_equal(signals.surprise, surprise[0].mean(0).double().numpy())
    np.testing.assert_array_equal(signals.lr, gates.lr[0].mean(0).double().numpy())
    for key in ("forget", "momentum"):
        want = getattr(gates, key)
        got = getattr(signals, key)
        if want is None:
            assert got is None, key
        else:
            np.testing.assert_array_equal(got, want[0].mean(0).double().numpy())
    assert np.all(signals.surprise > 0)


def test_gates_that_a_preset_lacks_are_none():
    signals = ct.text_signals(ct.preset_memory("deltanet"), "abc")
    assert signals.forget is None and signals.momentum is None
    signals = ct.text_signals(ct.preset_memory("titans"), "abc")
    assert signals.forget is not None and signals.momentum is not None


def test_heads_are_averaged(tmp_path):
    torch.manual_seed(3)
    memory = NeuralMemory(preset("titans", dim=32, heads=4)).eval()
    loaded = ct.load_checkpoint(ct.save_checkpoint(tmp_path, memory))
    signals = ct.text_signals(loaded, "hello")
    surprise, _ = _library_signals(memory, ct.byte_embedding(32), "hello")
    assert signals.heads == 4 and surprise.shape == (1, 4, 5)
    np.testing.assert_array_equal(signals.surprise, surprise[0].mean(0).double().numpy())


def test_preset_memory_leaves_the_global_generator_alone():
    torch.manual_seed(9)
    want = torch.rand(2)
    torch.manual_seed(9)
    ct.preset_memory("titans")
    torch.testing.assert_close(torch.rand(2), want, rtol=0, atol=0)
    with pytest.raises(ValueError, match="unknown preset 'nope'"):
        ct.preset_memory("nope")


# --- characters and colours ------------------------------------------------------------------


def test_char_values_average_the_bytes_of_a_character():
    values = np.arange(6, dtype=float)  # "Việt": V=0, i=1, ệ=2,3,4, t=5
    got = ct.char_values("Việt", values)
    assert [c for c, _, _ in got] == ["V", "i", "ệ", "t"]
    assert got[2] == ("ệ", 3.0, [2.0, 3.0, 4.0])
    assert ct.char_spans("aệ") == [("a", 0, 1), ("ệ", 1, 4)]
    with pytest.raises(ValueError, match="per_byte has 5 values, the text has 6 bytes"):
        ct.char_values("Việt", values[:5])


def test_colour_runs_from_white_to_the_colour():
    assert ct.colour(0.0, 0.0, 1.0, (200, 100, 0)) == "rgb(255, 255, 255)"
    assert ct.colour(1.0, 0.0, 1.0, (200, 100, 0)) == "rgb(200, 100, 0)"
    assert ct.colour(0.5, 0.0, 1.0, (255, 55, 255)) == "rgb(255, 155, 255)"
    assert ct.colour(5.0, 1.0, 1.0, (0, 0, 0)) == "rgb(255, 255, 255)"  # a flat signal


def test_coloured_html():
    text = "a<b\n"
    markup, low, high = ct.coloured_html(text, np.array([1.0, 3.0, 2.0, 1.0]), (0, 0, 0), "lr")
    assert (low, high) == (1.0, 3.0)
    assert markup.count('<span class="tok" data-signal="lr"') == 4
    assert "&lt;" in markup and "<b" not in markup.replace("<span", "")  # escaped
    assert 'data-value="3.0"' in markup and "rgb(0, 0, 0)" in markup  # the largest: full colour
    assert "⏎\n" in markup  # a new line shows, and stays one


# --- checkpoints -----------------------------------------------------------------------------


@pytest.fixture
def trained(tmp_path):
    torch.manual_seed(5)
    memory = NeuralMemory(preset("titans", dim=16)).eval()
    with torch.no_grad():  # gates unlike a fresh memory's, as training would leave them
        memory.to_gates.weight.normal_(0, 1.0)
    return memory, ct.save_checkpoint(tmp_path / "ckpt", memory)


def test_checkpoint_round_trip(trained):
    memory, folder = trained
    loaded = ct.load_checkpoint(folder)
    assert loaded.trained and not loaded.trained_embedding and loaded.label == str(folder)
    assert loaded.memory.config == memory.config
    for key, value in memory.state_dict().items():
        torch.testing.assert_close(loaded.memory.state_dict()[key], value, rtol=0, atol=0)
    signals = ct.text_signals(loaded, TEXT)
    surprise, gates = _library_signals(memory, ct.byte_embedding(16), TEXT)
    np.testing.assert_array_equal(signals.surprise, surprise[0].mean(0).double().numpy())
    np.testing.assert_array_equal(signals.forget, gates.forget[0].mean(0).double().numpy())
    assert np.ptp(signals.lr) > 1e-3  # trained gates move with the input


def test_checkpoint_with_embedding_prefix_and_nested_config(tmp_path):
    from safetensors.torch import save_file

    torch.manual_seed(6)
    memory = NeuralMemory(preset("deltanet", dim=8)).eval()
    embedding = torch.randn(256, 8)
    folder = tmp_path / "ckpt"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"memory": memory.config.to_dict()}))
    tensors = {f"memory.{k}": v.contiguous() for k, v in memory.state_dict().items()}
    tensors["embedding.weight"] = embedding
    save_file(tensors, str(folder / "model.safetensors"))
    loaded = ct.load_checkpoint(str(folder) + " ")  # a pasted path with a trailing space
    assert loaded.trained_embedding
    torch.testing.assert_close(loaded.embedding, embedding, rtol=0, atol=0)
    surprise, _ = _library_signals(memory, embedding, "abc")
    np.testing.assert_array_equal(
        ct.text_signals(loaded, "abc").surprise, surprise[0].mean(0).double().numpy()
    )


def _code(path) -> str:
    with pytest.raises(ExploreInputError) as err:
        ct.load_checkpoint(path)
    return err.value.code


def test_checkpoint_errors(tmp_path, trained):
    memory, folder = trained
    assert _code(tmp_path / "nope") == "err_ckpt_dir"
    assert _code("") == "err_ckpt_dir"
    assert _code(folder / "config.json") == "err_ckpt_dir"  # a file, not a directory
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ExploreInputError, match="lacks config.json, model.safetensors"):
        ct.load_checkpoint(empty)

    config = folder / "config.json"
    good = config.read_text()
    config.write_text("{not json")
    assert _code(folder) == "err_ckpt_config"
    config.write_text(json.dumps({"dim": 16, "wings": 2}))
    with pytest.raises(ExploreInputError, match="unknown fields"):
        ct.load_checkpoint(folder)
    config.write_text(json.dumps([1, 2]))
    assert _code(folder) == "err_ckpt_config"
    config.write_text(json.dumps({**json.loads(good), "dim": 32}))  # weights of another size
    with pytest.raises(ExploreInputError, match="model.safetensors does not load"):
        ct.load_checkpoint(folder)
    config.write_text(good)

    weights = folder / "model.safetensors"
    weights.write_bytes(pickle.dumps({"to_qkv.weight": torch.zeros(3)}))  # never unpickled
    assert _code(folder) == "err_ckpt_weights"
    weights.write_bytes(b"")
    assert _code(folder) == "err_ckpt_weights"


def test_checkpoint_embedding_of_the_wrong_shape(tmp_path):
    torch.manual_seed(7)
    memory = NeuralMemory(preset("deltanet", dim=8))
    folder = ct.save_checkpoint(tmp_path, memory, embedding=torch.zeros(256, 9))
    with pytest.raises(ExploreInputError, match=r"embedding.weight has shape \(256, 9\)"):
        ct.load_checkpoint(folder)


def test_recall_curve_is_the_task_s_and_cached():
    curve = ct.recall_curve("deltanet")
    want = recall_vs_age("deltanet")
    np.testing.assert_array_equal(curve.ages, want.ages)
    np.testing.assert_array_equal(curve.cosine, want.cosine)
    np.testing.assert_array_equal(curve.cosine_std, want.cosine_std)
    assert ct.recall_curve("deltanet") is curve
    with pytest.raises(ValueError, match="unknown preset"):
        ct.recall_curve("nope")


# --- checkpoints written by titans train -------------------------------------------------------


@pytest.fixture(scope="module")
def train_runs(tmp_path_factory):
    """Two-step ``titans train`` runs (MAG, MAC, SWA) of a tiny model on a small text folder."""
    from titans_memory import cli

    root = tmp_path_factory.mktemp("train_runs")
    corpus = root / "corpus"
    corpus.mkdir()
    for i in range(6):
        (corpus / f"{i}.py").write_text(f"def f(x):\n    return x * {i} + {i}\n" * 20)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    runs = {}
    for arch in ("mag", "mac", "swa"):
        runs[arch] = root / arch
        settings = [f"arch={arch}", "dim=16", "heads=2", "depth=2", "window=16", "segment=16",
                    "memory_chunk=8", "seq_len=32", "state_segments=1", "batch_size=2", "steps=2",
                    "eval_every=2", "eval_tokens=64", "eval_context=32", f"data={corpus}"]
        args = ["train", "--out", str(runs[arch]), "--quiet"]
        for s in settings:
            args += ["--set", s]
        assert cli.main(args) == 0
    torch.set_num_threads(before)
    return runs


def test_titans_train_checkpoint_shows_its_first_memory_layer(train_runs):
    from safetensors.torch import load_file

    from titans_memory.training.checkpoint import load_model

    run = train_runs["mag"]
    ckpt = run / "checkpoints" / "step_0000002"
    for path in (run, ckpt):  # a run folder (its best checkpoint) or the checkpoint itself
        loaded = ct.load_checkpoint(path)
        assert loaded.trained and loaded.trained_embedding
        assert loaded.label == f"{ckpt} (layer 0 of MAG)"
    saved = load_file(str(ckpt / "model.safetensors"))
    for key, value in loaded.memory.state_dict().items():
        torch.testing.assert_close(value, saved[f"blocks.0.memory.{key}"], rtol=0, atol=0)
    torch.testing.assert_close(loaded.embedding, saved["embed.weight"], rtol=0, atol=0)
    # what the memory of a MAG layer writes: the normalised embedding of the bytes (layer 0)
    model, _, _ = load_model(ckpt)
    ids = torch.tensor(list(TEXT.encode("utf-8")))
    with torch.no_grad():
        u = model.blocks[0].norm(model.embed(ids[None]))  # (1, T, dim)
    with torch.no_grad():
        surprise, _ = model.blocks[0].memory.surprise(u)
        gates = model.blocks[0].memory.gates(u)
    signals = ct.text_signals(loaded, TEXT)
    np.testing.assert_array_equal(signals.surprise, surprise[0].mean(0).double().numpy())
    np.testing.assert_array_equal(signals.lr, gates.lr[0].mean(0).double().numpy())
    # not what the trained embedding alone would give: the layer's norm is part of the input
    plain = ct.LoadedMemory(loaded.memory, loaded.embedding, "plain", True, True)
    assert not np.allclose(ct.text_signals(plain, TEXT).surprise, signals.surprise)


def test_mac_checkpoint_feeds_the_attention_outputs_it_writes(train_runs):
    loaded = ct.load_checkpoint(train_runs["mac"])
    ids = torch.tensor(list(TEXT.encode("utf-8")))  # 33 bytes: segments of 16, 16 and 1
    x = loaded.inputs(ids)
    assert x.shape == (1, len(ids), 16)
    # writing x from a fresh state leaves the memory where the model's own run leaves it
    from titans_memory.training.checkpoint import load_model

    model, _, _ = load_model(train_runs["mac"])
    with torch.no_grad():
        _, cache = model(ids[None])
        _, state = loaded.memory.surprise(x)
    for got, want in zip(state.weights + state.momentum, cache.layers[0].memory.weights
                         + cache.layers[0].memory.momentum, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    assert ct.text_signals(loaded, TEXT).surprise.shape == (len(ids),)


def test_titans_train_checkpoint_errors(train_runs):
    with pytest.raises(ExploreInputError, match=r"model without memory \(swa\)") as err:
        ct.load_checkpoint(train_runs["swa"])
    assert err.value.code == "err_ckpt_no_memory"
    ckpt = train_runs["mag"] / "checkpoints" / "step_0000002"
    config = ckpt / "config.json"
    good = config.read_text()
    try:
        config.write_text(json.dumps({**json.loads(good), "depth": 3}))  # a tampered config
        with pytest.raises(ExploreInputError, match=r"is missing the tensor 'blocks.2.") as err:
            ct.load_checkpoint(ckpt)
        assert err.value.code == "err_ckpt_model"
    finally:
        config.write_text(good)
