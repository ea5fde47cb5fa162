"""What the transformers wrapper cannot do is refused clearly: beam search, contrastive and assisted
decoding (they would need the memory state reordered), and empty ``input_ids``."""

from __future__ import annotations

import pytest

pytest.importorskip("transformers", reason="the hf extra: pip install 'titans-miras[hf]'")

import torch  # noqa: E402
from transformers import GenerationConfig  # noqa: E402

import titans_memory.hf as thf  # noqa: E402
from titans_memory import MemoryConfig  # noqa: E402
from titans_memory.models import ModelConfig, TitansLM  # noqa: E402


@pytest.fixture(scope="module")
def hf_model():
    torch.manual_seed(0)
    lm = TitansLM(ModelConfig(arch="mag", dim=16, depth=2, heads=2, window=8, segment=8, persistent_tokens=2,
                              memory=MemoryConfig(dim=16, heads=2, chunk_size=4)))
    return thf.TitansForCausalLM.from_titans(lm).eval()


PROMPT = torch.tensor([[5, 17, 99, 3, 42]])


@pytest.mark.parametrize("how", [
    {"num_beams": 2},
    {"num_beams": 4, "num_return_sequences": 2},
    {"generation_config": GenerationConfig(num_beams=3, max_new_tokens=4)},
    {"num_beams": 4, "num_beam_groups": 2, "diversity_penalty": 1.0},
])
def test_beam_search_is_refused(hf_model, how):
    kwargs = {"max_new_tokens": 4, "do_sample": False, **how}
    if "generation_config" in how:
        kwargs.pop("max_new_tokens"), kwargs.pop("do_sample")
    with pytest.raises(ValueError, match=r"num_beam\w*=\d+ is not supported \(beam search would need the memory state"):
        hf_model.generate(PROMPT, **kwargs)


def test_contrastive_and_assisted_decoding_are_refused(hf_model):
    with pytest.raises(ValueError, match="contrastive search"):
        hf_model.generate(PROMPT, max_new_tokens=3, penalty_alpha=0.6, top_k=4)
    with pytest.raises(ValueError, match="assisted decoding"):
        hf_model.generate(PROMPT, max_new_tokens=3, prompt_lookup_num_tokens=2)


def test_greedy_and_sampling_still_work(hf_model):
    out = hf_model.generate(PROMPT, max_new_tokens=6, do_sample=False, num_beams=1)
    lm = hf_model.titans
    ours = lm.generate(PROMPT, 6, temperature=0)
    assert torch.equal(out, ours)


@pytest.mark.parametrize("ids", [torch.zeros(1, 0, dtype=torch.long), torch.zeros(0, 3, dtype=torch.long)])
def test_empty_input_ids_is_a_clear_error(hf_model, ids):
    with pytest.raises(ValueError, match=r"input_ids must be \(batch, length\) with at least one token, got shape"):
        hf_model.generate(ids, max_new_tokens=3)
    with pytest.raises(ValueError, match=r"input_ids must be \(batch, length\) with at least one token"):
        hf_model(ids)
