"""lm-evaluation-harness on a Titans checkpoint (runs where lm-eval is installed; CI skips it).

    uv run --with "lm-eval[hf]" pytest tests/hf/test_lm_eval.py

A local task (a JSON-lines file, nothing downloaded) scores documents with lm-eval's rolling
loglikelihood; its bits per byte must equal the model's own, computed here from first principles.
"""

from __future__ import annotations

import json
import math

import pytest

pytest.importorskip("transformers", reason="the hf extra: pip install 'titans-miras[hf]'")
pytest.importorskip("lm_eval", reason="lm-eval is not a dependency: uv run --with 'lm-eval[hf]' pytest tests/hf/test_lm_eval.py")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import titans_memory.hf  # noqa: E402, F401 -- registers "titans"
from titans_memory import MemoryConfig  # noqa: E402
from titans_memory.models import ModelConfig, TitansLM  # noqa: E402
from titans_memory.training.checkpoint import save_model_files  # noqa: E402
from titans_memory.training.data import ByteTokenizer  # noqa: E402

DOCS = ["def add(a, b):\n    return a + b\n", "the memory is written at test time ✓", "x = [i * i for i in range(10)]"]


def _own_bits_per_byte(model: TitansLM, docs: list[str]) -> float:
    nll, n_bytes = 0.0, 0
    for doc in docs:
        ids = torch.tensor([[0, *doc.encode("utf-8")]])  # lm-eval's rolling windows start from eos (NUL)
        logits, _ = model(ids[:, :-1])
        nll += F.cross_entropy(logits[0], ids[0, 1:], reduction="sum").item()
        n_bytes += len(doc.encode("utf-8"))
    return nll / math.log(2) / n_bytes


def test_lm_eval_bits_per_byte_equals_the_models(tmp_path):
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    torch.manual_seed(0)
    model = TitansLM(ModelConfig(arch="mac", dim=16, depth=2, heads=2, window=8, segment=8,
                                 memory=MemoryConfig(dim=16, heads=2, chunk_size=4)))
    ckpt = tmp_path / "ckpt"
    save_model_files(ckpt, model.config, model.state_dict(), ByteTokenizer())
    data = tmp_path / "docs.jsonl"
    data.write_text("".join(json.dumps({"text": d}) + "\n" for d in DOCS))
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "titans_local.yaml").write_text(
        "task: titans_local_bpb\n"
        "dataset_path: json\n"
        f"dataset_kwargs:\n  data_files:\n    test: {data}\n"
        "output_type: loglikelihood_rolling\n"
        "test_split: test\n"
        'doc_to_text: ""\n'
        'doc_to_target: "{{text}}"\n'
        "metric_list:\n  - metric: bits_per_byte\n"
    )
    results = simple_evaluate(
        model="hf", model_args={"pretrained": str(ckpt), "dtype": "float32", "device": "cpu"},
        tasks=["titans_local_bpb"], task_manager=TaskManager(include_path=str(tasks)), batch_size=1,
    )
    got = results["results"]["titans_local_bpb"]["bits_per_byte,none"]
    assert got == pytest.approx(_own_bits_per_byte(model, DOCS), rel=1e-5)
