"""``titans sample``: continue a prompt with a trained model, printing each token as it comes."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import torch

from titans_memory.models.lm import TitansLM, sample_logits
from titans_memory.training.data import ByteTokenizer, HFTokenizer, Tokenizer


def tokenizer_for(folder: Path, name: str | None) -> Tokenizer:
    """The tokenizer a checkpoint was trained with: bytes, or the one saved beside its weights."""
    if name is None:
        return ByteTokenizer()
    if (folder / "tokenizer_config.json").is_file() or (folder / "tokenizer.json").is_file():
        return HFTokenizer(str(folder))
    return HFTokenizer(name)


#: the smallest temperature above 0: below it the logits divided by it could overflow float32
#: (and the draw is greedy in all but name); 0 itself means greedy
MIN_TEMPERATURE = 1e-4


def check_sampling(max_new_tokens: int, temperature: float, top_k: int | None, top_p: float | None) -> None:
    """ValueError naming the argument that is out of range."""
    if max_new_tokens < 0:
        raise ValueError(f"--max-new-tokens must be >= 0, got {max_new_tokens}")
    if not (temperature == 0 or MIN_TEMPERATURE <= temperature < float("inf")):
        raise ValueError(
            f"--temperature must be >= 0 (0: greedy; otherwise a finite number >= {MIN_TEMPERATURE:g}, below which "
            f"the logits / temperature overflow), got {temperature}"
        )
    if top_k is not None and top_k < 1:
        raise ValueError(f"--top-k must be >= 1, got {top_k}")
    if top_p is not None and not 0 < top_p <= 1:
        raise ValueError(f"--top-p must be in (0, 1], got {top_p}")


@torch.no_grad()
def stream_tokens(
    model: TitansLM,
    prompt: Sequence[int],
    max_new_tokens: int,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> Iterator[int]:
    """Yield ``max_new_tokens`` tokens continuing ``prompt``, one at a time, as they are drawn.

    The prompt goes through in one call, then each new token with the cache: the same logits as
    one call over the whole text, so greedy decoding (``temperature=0``) gives the tokens of
    ``TitansLM.generate`` and of the Hugging Face model's ``generate``.
    """
    check_sampling(max_new_tokens, temperature, top_k, top_p)
    if len(prompt) == 0:
        raise ValueError("the prompt must hold at least one token")
    device = model.embed.weight.device
    logits, cache = model(torch.tensor([list(prompt)], dtype=torch.long, device=device))
    for i in range(max_new_tokens):
        token = sample_logits(logits[:, -1].float(), temperature, top_k, top_p, generator)  # (1,)
        yield int(token)
        if i + 1 < max_new_tokens:
            logits, cache = model(token[:, None], cache)
