"""``TitansConfig``: the transformers configuration of a :class:`~titans_memory.models.lm.TitansLM`."""

from __future__ import annotations

from transformers import PretrainedConfig

from titans_memory.models.config import ModelConfig

_DEFAULTS = ModelConfig()


class TitansConfig(PretrainedConfig):
    """The fields of :class:`~titans_memory.models.config.ModelConfig`, as a transformers config.

    ``config.json`` written by ``save_pretrained`` and by ``titans train``'s checkpoints are the
    same file: ``model_type: "titans"`` and the ModelConfig's fields (``memory`` as a dict).
    """

    model_type = "titans"
    attribute_map = {"hidden_size": "dim", "num_hidden_layers": "depth", "num_attention_heads": "heads"}

    def __init__(
        self,
        arch: str = _DEFAULTS.arch,
        vocab_size: int = _DEFAULTS.vocab_size,
        dim: int = _DEFAULTS.dim,
        depth: int = _DEFAULTS.depth,
        heads: int = _DEFAULTS.heads,
        window: int = _DEFAULTS.window,
        segment: int = _DEFAULTS.segment,
        persistent_tokens: int = _DEFAULTS.persistent_tokens,
        memory_layers: list[int] | None = None,
        memory: dict | None = None,
        mlp_expansion: float = _DEFAULTS.mlp_expansion,
        rope_base: float = _DEFAULTS.rope_base,
        norm_eps: float = _DEFAULTS.norm_eps,
        hope: dict | None = None,
        mac_write: str = _DEFAULTS.mac_write,
        backend: str = _DEFAULTS.backend,
        compile_step: bool | str = _DEFAULTS.compile_step,
        tokenizer: str | None = None,
        **kwargs,
    ) -> None:
        self.arch, self.vocab_size, self.dim, self.depth, self.heads = arch, vocab_size, dim, depth, heads
        self.window, self.segment, self.persistent_tokens = window, segment, persistent_tokens
        self.memory_layers = None if memory_layers is None else list(memory_layers)
        self.memory = memory
        self.mlp_expansion, self.rope_base, self.norm_eps = mlp_expansion, rope_base, norm_eps
        self.hope = hope  # arch="hope": the HopeConfig's fields
        self.mac_write = mac_write
        self.backend, self.compile_step = backend, compile_step  # how the memory runs, not what it computes
        self.tokenizer = tokenizer  # None: bytes (vocabulary 256)
        kwargs.setdefault("tie_word_embeddings", False)  # the head has its own weights
        super().__init__(**kwargs)
        self.model_config()  # validate now: a bad field is a ValueError naming it

    def model_config(self) -> ModelConfig:
        """The :class:`ModelConfig` these fields describe."""
        return ModelConfig.from_dict({
            "arch": self.arch, "vocab_size": self.vocab_size, "dim": self.dim, "depth": self.depth,
            "heads": self.heads, "window": self.window, "segment": self.segment,
            "persistent_tokens": self.persistent_tokens, "memory_layers": self.memory_layers,
            "memory": self.memory, "mlp_expansion": self.mlp_expansion, "rope_base": self.rope_base,
            "norm_eps": self.norm_eps, "hope": self.hope, "mac_write": self.mac_write,
            "backend": self.backend, "compile_step": self.compile_step,
        })

    @classmethod
    def from_dict(cls, config_dict: dict, **kwargs):  # noqa: D102 (transformers' loader)
        from titans_memory.training.checkpoint import LEGACY_FIELDS

        # a config.json saved by an older version: the fields it lacks keep the behaviour it had
        return super().from_dict({**LEGACY_FIELDS, **config_dict}, **kwargs)

    @classmethod
    def from_model_config(cls, config: ModelConfig, tokenizer: str | None = None, **kwargs) -> TitansConfig:
        return cls(**config.to_dict(), tokenizer=tokenizer, **kwargs)
