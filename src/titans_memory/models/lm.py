"""``TitansLM``: a language model of Titans blocks (MAC, MAG, MAL, LMM) or the SWA baseline."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from titans_memory.models.blocks import BlockFactory, RMSNorm, make_block
from titans_memory.models.cache import ModelCache
from titans_memory.models.config import ModelConfig


def sample_logits(
    logits: Tensor,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """One token per row of ``logits`` ``(B, V)``; returns ``(B,)`` int64.

    ``temperature == 0`` is greedy (argmax). Otherwise the logits are divided by ``temperature``,
    then only the ``top_k`` most likely tokens are kept, then only the smallest set of the most
    likely whose probabilities sum to at least ``top_p`` (nucleus sampling; the most likely token
    always stays), and one token is drawn from what is left.
    """
    if temperature == 0:
        return logits.argmax(-1)
    if logits.dtype in (torch.float16, torch.bfloat16):
        logits = logits.float()  # softmax and cumsum of a nucleus in half precision lose tokens
    logits = logits / temperature
    if top_k is not None and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]  # (B, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        probs = torch.softmax(sorted_logits, dim=-1)
        before = probs.cumsum(-1) - probs  # probability mass of the strictly more likely tokens
        drop_sorted = before >= top_p  # the first token has 0 before it: never dropped
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


class TitansLM(nn.Module):
    """Token embedding, ``depth`` blocks (:mod:`titans_memory.models.blocks`), RMSNorm, linear head.

    Args:
        config: a :class:`ModelConfig`; ``config.arch`` picks the block of every layer with memory
            (``config.memory_layers``), the others are sliding-window attention blocks.
        block_factory: ``factory(config, layer) -> Block`` builds each layer's block (default:
            :func:`~titans_memory.models.blocks.make_block`, as just said); e.g.
            :func:`~titans_memory.models.blocks.conv_swa_blocks` for the convolved SWA control.
            What it builds is not part of ``config``: checkpoints record plain ``config`` models.

    Example::

        >>> from titans_memory import ModelConfig, TitansLM
        >>> model = TitansLM(ModelConfig(arch="mac", vocab_size=256, dim=64, depth=2, heads=2,
        ...                              window=32, segment=32))
        >>> tokens = torch.randint(0, 256, (2, 100))
        >>> logits, cache = model(tokens)                      # (2, 100, 256)
        >>> more, cache = model(torch.randint(0, 256, (2, 5)), cache)   # the same streams go on
        >>> out = model.generate(tokens[:, :10], max_new_tokens=20, top_k=50)   # (2, 30)

    Feeding tokens in pieces with the returned cache gives the logits of one call over the
    whole sequence (for any split); the cache's size does not grow with the sequence.
    """

    def __init__(self, config: ModelConfig, *, block_factory: BlockFactory | None = None) -> None:
        super().__init__()
        if not isinstance(config, ModelConfig):
            raise TypeError(f"config must be a ModelConfig, got {type(config).__name__}")
        make = make_block if block_factory is None else block_factory
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.dim)
        self.blocks = nn.ModuleList(make(config, i) for i in range(config.depth))
        self.norm = RMSNorm(config.dim, config.norm_eps)
        self.head = nn.Linear(config.dim, config.vocab_size, bias=False)

    def _check_tokens(self, tokens: Tensor) -> None:
        if not isinstance(tokens, Tensor):
            raise TypeError(f"tokens must be a torch.Tensor of token ids, got {type(tokens).__name__}")
        if tokens.dtype.is_floating_point or tokens.dtype.is_complex or tokens.dtype == torch.bool:
            raise TypeError(f"tokens must be an integer tensor of token ids, got dtype {tokens.dtype}")
        if tokens.dim() != 2:
            raise ValueError(f"tokens must have shape (batch, time), got {tuple(tokens.shape)}")
        if tokens.shape[0] == 0:
            raise ValueError("tokens must have batch size >= 1")
        if tokens.numel():
            lo, hi = (int(v) for v in torch.aminmax(tokens))
            if lo < 0 or hi >= self.config.vocab_size:
                raise ValueError(
                    f"token ids must lie in 0..{self.config.vocab_size - 1} (vocab_size), got values in {lo}..{hi}"
                )

    def init_cache(self, batch_size: int) -> ModelCache:
        """The cache of ``batch_size`` fresh streams (what ``forward(tokens)`` starts from)."""
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        p = self.embed.weight
        return ModelCache.empty(self.config, batch_size, p.dtype, p.device)

    def forward(self, tokens: Tensor, cache: ModelCache | None = None) -> tuple[Tensor, ModelCache]:
        """Logits of every position, and the cache to continue the same streams.

        Args:
            tokens: ``(batch, time)`` integer token ids in ``0 .. vocab_size - 1``; ``time`` may
                be 0 (nothing happens) or anything else.
            cache: from a previous call of this model on the same streams; None starts fresh.

        Returns:
            ``(logits, cache)``: ``logits`` ``(batch, time, vocab_size)`` in the model's dtype.
        """
        self._check_tokens(tokens)
        p = self.embed.weight
        if cache is None:
            cache = self.init_cache(tokens.shape[0])
        elif not isinstance(cache, ModelCache):
            raise TypeError(f"cache must be a ModelCache or None, got {type(cache).__name__}")
        else:
            cache.check(self.config, tokens.shape[0], p.dtype, p.device)
        tokens = tokens.to(p.device)
        x = self.embed(tokens)  # (B, T, dim)
        layers = []
        for block, layer_cache in zip(self.blocks, cache.layers, strict=True):
            x, layer_cache = block(x, layer_cache, cache.position)
            layers.append(layer_cache)
        logits = self.head(self.norm(x))
        new_cache = ModelCache(
            self.config, cache.batch_size, cache.position + tokens.shape[1], p.dtype, p.device, tuple(layers)
        )
        return logits, new_cache

    @torch.no_grad()
    def generate(
        self,
        prompt: Tensor,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        *,
        cache: ModelCache | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Continue ``prompt`` by ``max_new_tokens`` sampled tokens; returns ``(batch, T + max_new_tokens)``.

        The prompt goes through in one call, then one token per call with the cache (exactly the
        logits of one call over the whole text). See :func:`sample_logits` for ``temperature``
        (0 = greedy), ``top_k`` and ``top_p``; ``generator`` makes the draws reproducible.
        ``cache``, if given, is the state of the streams before the prompt.
        """
        self._check_tokens(prompt)
        if prompt.shape[1] == 0:
            raise ValueError("prompt must hold at least one token (shape (batch, time) with time >= 1)")
        if not isinstance(max_new_tokens, int) or isinstance(max_new_tokens, bool) or max_new_tokens < 0:
            raise ValueError(f"max_new_tokens must be an integer >= 0, got {max_new_tokens!r}")
        if not (isinstance(temperature, int | float) and temperature >= 0):
            raise ValueError(f"temperature must be a number >= 0 (0 = greedy), got {temperature!r}")
        if top_k is not None and (not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1):
            raise ValueError(f"top_k must be an integer >= 1 or None, got {top_k!r}")
        if top_p is not None and not (isinstance(top_p, int | float) and 0 < top_p <= 1):
            raise ValueError(f"top_p must be in (0, 1] or None, got {top_p!r}")
        out = [prompt.to(self.embed.weight.device)]
        logits, cache = self(out[0], cache)
        for i in range(max_new_tokens):
            nxt = sample_logits(logits[:, -1], temperature, top_k, top_p, generator)[:, None]  # (B, 1)
            out.append(nxt)
            if i + 1 < max_new_tokens:  # the last token's logits are never needed
                logits, cache = self(nxt, cache)
        return torch.cat(out, dim=1)
