"""Titans models in the Hugging Face ecosystem (the optional extra ``titans-miras[hf]``).

Importing this package registers :class:`TitansConfig` and :class:`TitansForCausalLM` with
transformers' Auto classes, so that a ``titans train`` checkpoint (or a ``save_pretrained``
folder) loads with ``AutoModelForCausalLM.from_pretrained(dir)`` and generates with ``generate``::

    import titans_memory.hf  # noqa: F401  (registers "titans")
    from transformers import AutoModelForCausalLM, AutoTokenizer
    model = AutoModelForCausalLM.from_pretrained("runs/titans/checkpoints/step_0002000")
    tok = AutoTokenizer.from_pretrained("runs/titans/checkpoints/step_0002000")  # bytes
    out = model.generate(**tok("def main(", return_tensors="pt"), max_new_tokens=50, do_sample=False)
"""

from __future__ import annotations

try:
    import transformers
except ImportError as err:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "titans_memory.hf needs transformers: pip install 'titans-miras[hf]' (or: uv sync --extra hf)"
    ) from err

from titans_memory.hf.configuration import TitansConfig
from titans_memory.hf.modeling import TitansCausalLMOutput, TitansForCausalLM
from titans_memory.hf.tokenizer import byte_tokenizer


def register() -> None:
    """Register "titans" with AutoConfig and AutoModelForCausalLM (done on import; safe to repeat)."""
    try:
        transformers.AutoConfig.register("titans", TitansConfig)
    except ValueError:  # already registered
        pass
    try:
        transformers.AutoModelForCausalLM.register(TitansConfig, TitansForCausalLM)
    except ValueError:
        pass


register()

__all__ = ["TitansCausalLMOutput", "TitansConfig", "TitansForCausalLM", "byte_tokenizer", "register"]
