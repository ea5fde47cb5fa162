"""The transformers wrapper: save/load gives the same logits, generate gives titans sample's tokens."""

from __future__ import annotations

import pytest

pytest.importorskip("transformers", reason="the hf extra: pip install 'titans-miras[hf]' (uv sync installs it with dev)")

import torch  # noqa: E402
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer  # noqa: E402

import titans_memory.hf as thf  # noqa: E402
from titans_memory import MemoryConfig, cli  # noqa: E402
from titans_memory.core.hope import HopeConfig  # noqa: E402
from titans_memory.models import ARCHS, ModelConfig, TitansLM  # noqa: E402
from titans_memory.training.checkpoint import load_model, save_model_files  # noqa: E402
from titans_memory.training.config import TrainConfig  # noqa: E402
from titans_memory.training.data import ByteTokenizer  # noqa: E402
from titans_memory.training.loop import train  # noqa: E402


def tiny_model(arch: str, seed: int = 0) -> TitansLM:
    torch.manual_seed(seed)
    memory = None if arch in ("swa", "hope") else MemoryConfig(dim=16, heads=2, chunk_size=4)
    hope = HopeConfig(chunk_size=4, cms_chunks=(2, 8), self_modifying=True) if arch == "hope" else None
    return TitansLM(ModelConfig(arch=arch, dim=16, depth=2, heads=2, window=8, segment=8,
                                persistent_tokens=2, memory=memory, hope=hope))


def _prompt(batch: int = 2, length: int = 11, seed: int = 1) -> torch.Tensor:
    return torch.randint(1, 256, (batch, length), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("arch", ARCHS)
def test_save_pretrained_from_pretrained_same_logits(tmp_path, arch):
    model = tiny_model(arch)
    hf = thf.TitansForCausalLM.from_titans(model)
    hf.save_pretrained(tmp_path)
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path)
    assert isinstance(loaded, thf.TitansForCausalLM)
    x = _prompt(length=30)  # longer than a window, a segment and several memory chunks
    expected, _ = model(x)
    torch.testing.assert_close(loaded(x).logits, expected, rtol=0, atol=1e-6)
    torch.testing.assert_close(hf(x).logits, expected, rtol=0, atol=0)
    reloaded, _, _ = load_model(tmp_path)  # and titans' own loader reads the save_pretrained folder
    torch.testing.assert_close(reloaded(x)[0], expected, rtol=0, atol=0)


@pytest.mark.parametrize("arch", ARCHS)
def test_greedy_generate_equals_titans_generate(tmp_path, arch):
    model = tiny_model(arch, seed=3)
    save_model_files(tmp_path, model.config, model.state_dict(), ByteTokenizer())
    hf = AutoModelForCausalLM.from_pretrained(tmp_path)
    x = _prompt(batch=2, length=9)
    ours = model.generate(x, 25, temperature=0)
    theirs = hf.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=25, do_sample=False)
    assert torch.equal(theirs, ours)


def test_training_checkpoint_loads_with_auto_classes_and_samples_like_titans_sample(tmp_path, capsys):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i in range(6):
        (corpus / f"{i}.txt").write_text(f"def f(x):\n    return x + {i}\n" * 30)
    config = TrainConfig(arch="mac", dim=16, heads=2, depth=2, window=16, segment=16, memory_chunk=8,
                         seq_len=32, state_segments=2, batch_size=4, steps=2, eval_every=2, eval_tokens=128,
                         eval_context=64, data=str(corpus))
    train(config, tmp_path / "run", progress=False)
    ckpt = tmp_path / "run" / "checkpoints" / "step_0000002"
    assert AutoConfig.from_pretrained(ckpt).model_type == "titans"
    hf = AutoModelForCausalLM.from_pretrained(ckpt)
    tok = AutoTokenizer.from_pretrained(ckpt)
    prompt = "def f(x):\n"
    inputs = tok(prompt, return_tensors="pt")
    assert inputs["input_ids"][0].tolist() == list(prompt.encode())
    out = hf.generate(**inputs, max_new_tokens=30, do_sample=False)
    assert cli.main(["sample", "--checkpoint", str(ckpt), "--prompt", prompt, "--temperature", "0",
                     "--max-new-tokens", "30"]) == 0
    printed = capsys.readouterr().out
    assert printed == tok.decode(out[0]) + "\n"


def test_byte_tokenizer_ids_are_the_utf8_bytes():
    tok = thf.byte_tokenizer()
    text = "".join(chr(c) for c in range(1, 0x250)) + " ✓ 🙂\x00end"
    ids = tok(text)["input_ids"]
    assert ids == list(text.encode("utf-8"))
    assert tok.decode(ids) == text
    assert tok.eos_token_id == 0 and tok.pad_token_id == 0 and len(tok) == 256


def test_padding_on_the_right_is_fine_on_the_left_refused():
    model = tiny_model("mag")
    hf = thf.TitansForCausalLM.from_titans(model)
    x = _prompt(batch=2, length=12)
    mask = torch.ones_like(x)
    mask[1, 8:] = 0  # right padding: the first 8 positions of row 1 are what they would be alone
    torch.testing.assert_close(hf(x, attention_mask=mask).logits[1, :8], model(x[1:, :8])[0][0], rtol=0, atol=1e-6)
    mask = torch.ones_like(x)
    mask[1, :3] = 0
    with pytest.raises(ValueError, match="left padding"):
        hf(x, attention_mask=mask)


def test_labels_give_the_shifted_cross_entropy():
    model = tiny_model("lmm")
    hf = thf.TitansForCausalLM.from_titans(model)
    x = _prompt(batch=2, length=10)
    out = hf(x, labels=x)
    expected = torch.nn.functional.cross_entropy(out.logits[:, :-1].flatten(0, 1), x[:, 1:].flatten())
    torch.testing.assert_close(out.loss, expected)


def test_config_validates_and_maps_standard_names():
    config = thf.TitansConfig(arch="mal", dim=32, depth=3, heads=4)
    assert (config.hidden_size, config.num_hidden_layers, config.num_attention_heads) == (32, 3, 4)
    assert config.model_config().arch == "mal"
    with pytest.raises(ValueError, match="ModelConfig.arch must be one of"):
        thf.TitansConfig(arch="gpt")


def test_config_carries_macs_write_option():
    cfg = ModelConfig(arch="mac", dim=16, depth=1, heads=2, window=8, segment=8, mac_write="y+u",
                      memory=MemoryConfig(dim=16, heads=2, chunk_size=4))
    config = thf.TitansConfig.from_model_config(cfg)
    assert config.mac_write == "y+u" and config.model_config() == cfg
    with pytest.raises(ValueError, match="mac_write"):
        thf.TitansConfig(mac_write="x")


def test_a_config_json_without_mac_write_loads_as_the_mac_that_wrote_y():
    """A config.json saved before ``mac_write`` existed: its MAC wrote y; a new config defaults to y+u."""
    assert thf.TitansConfig(arch="mac").mac_write == "y+u"
    old = thf.TitansConfig.from_dict({"arch": "mac", "dim": 32, "depth": 2, "heads": 2, "window": 8, "segment": 8})
    assert old.mac_write == "y" and old.model_config().mac_write == "y"


def test_config_carries_the_memory_backend_and_compile_step():
    cfg = ModelConfig(arch="lmm", dim=16, depth=1, heads=2, window=8, backend="recurrent", compile_step="eager",
                      memory=MemoryConfig(dim=16, heads=2, chunk_size=4))
    config = thf.TitansConfig.from_model_config(cfg)
    assert (config.backend, config.compile_step) == ("recurrent", "eager") and config.model_config() == cfg
    with pytest.raises(ValueError, match="backend"):
        thf.TitansConfig(backend="nope")
