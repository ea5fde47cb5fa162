"""A backend registered from outside the package (public API only): the chunked operator with its
per-chunk step replaced through the kernel seam (``chunked_memory(step=...)``), as a device kernel
would be. It equals the reference, and the name reaches NeuralMemory, TitansLM (ModelConfig),
a training run's config (TrainConfig) and the recall tasks."""

from __future__ import annotations

import pytest
import torch

from titans_memory.core import MemoryConfig, NeuralMemory
from titans_memory.core.ops import (
    BACKENDS,
    ChunkStepInputs,
    ChunkStepOutput,
    chunk_step,
    chunked_memory,
    register_backend,
)
from titans_memory.models import ModelConfig, TitansLM
from titans_memory.tasks.recall import operator_setup, recall_vs_age
from titans_memory.training.config import TrainConfig

DT = torch.float64


class CountingKernel:
    """A "kernel" with the seam's contract, typed inputs in and typed outputs out: it counts its
    calls and delegates to the reference step with in-place updates off (as a kernel that
    allocates its own outputs would)."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, rule, inputs: ChunkStepInputs) -> ChunkStepOutput:
        assert isinstance(inputs, ChunkStepInputs)
        self.calls += 1
        out = chunk_step(rule, inputs._replace(inplace=False, differentiable=True))
        assert isinstance(out, ChunkStepOutput)
        return out


@pytest.fixture
def kernel():
    counting = CountingKernel()
    register_backend("seam", lambda inputs, state, rule: chunked_memory(inputs, state, rule, step=counting))
    yield counting
    BACKENDS.pop("seam")


def _memory(**overrides) -> NeuralMemory:
    torch.manual_seed(0)
    return NeuralMemory(MemoryConfig(**{"dim": 8, "heads": 2, "expansion": 2.0, "chunk_size": 4, **overrides})).to(DT)


@pytest.mark.parametrize("overrides", [{}, {"momentum": False, "retention": "lq"}, {"depth": 1, "decayed_gradient": True}])
def test_a_registered_backend_equals_the_reference(kernel, compare_with_reference, overrides):
    mem = _memory(**overrides)
    x = torch.randn(2, 19, 8, generator=torch.Generator().manual_seed(1), dtype=DT)
    compare_with_reference(mem, x, "seam")
    assert kernel.calls > 0


def test_the_backend_reaches_the_model_and_the_training_config(kernel):
    torch.manual_seed(0)
    cfg = ModelConfig(arch="mal", vocab_size=32, dim=16, depth=2, heads=2, window=8, segment=8, backend="seam",
                      memory=MemoryConfig(dim=16, heads=2, chunk_size=4))
    model = TitansLM(cfg).to(DT)
    reference = TitansLM(cfg.replace(backend="recurrent")).to(DT)
    reference.load_state_dict(model.state_dict())
    tokens = torch.randint(0, 32, (2, 13), generator=torch.Generator().manual_seed(2))
    logits, _ = model(tokens)
    assert kernel.calls > 0
    torch.testing.assert_close(logits, reference(tokens)[0], rtol=1e-10, atol=1e-10)
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    train = TrainConfig(backend="seam", compile_step=False)
    assert train.model_config(256).backend == "seam"
    assert TrainConfig.from_dict({"backend": "seam"}).model_config(256).backend == "seam"
    with pytest.raises(ValueError, match=r"ModelConfig.backend must be one of 'chunked', .*, got 'nope'"):
        ModelConfig(backend="nope")
    with pytest.raises(ValueError, match=r"config: ModelConfig.backend must be one of"):
        TrainConfig.from_dict({"backend": "nope"})
    with pytest.raises(TypeError, match=r"ModelConfig.compile_step must be True, False or a torch.compile backend"):
        ModelConfig(compile_step="")


def test_the_recall_tasks_go_through_the_backend_registry(kernel):
    setup = operator_setup("titans", head_dim=8, backend="seam")
    assert setup.backend == "seam"
    ours = recall_vs_age("titans", pairs=12, head_dim=8, trials=3, backend="seam")
    assert kernel.calls > 0
    reference = recall_vs_age("titans", pairs=12, head_dim=8, trials=3, backend="recurrent")
    torch.testing.assert_close(torch.as_tensor(ours.cosine), torch.as_tensor(reference.cosine), rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match=r"backend must be one of"):
        operator_setup("titans", backend="nope")
