"""``TitansForCausalLM``: a :class:`~titans_memory.models.lm.TitansLM` as a transformers causal LM.

Its parameters are TitansLM's, under the same names, so ``save_pretrained`` writes the very
``model.safetensors`` of a ``titans train`` checkpoint and ``from_pretrained`` reads either.
``generate`` works through a cache that carries the memory state (:class:`ModelCache`: every
layer's memory weights, momentum and attention keys): the prompt goes through once, then one token
per call, exactly the logits of one call over the whole text, as ``titans sample`` does.

Greedy decoding and sampling are supported; beam search, contrastive search and assisted
decoding are refused with a ``ValueError``: they would have to reorder or roll back the memory
state (weights written at test time), which this cache does not do, and their beam scores would
not be the model's log-probabilities.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformers import GenerationMixin, PreTrainedModel
from transformers.modeling_outputs import ModelOutput

from titans_memory.hf.configuration import TitansConfig
from titans_memory.models.attention import Attention, rotary_frequencies
from titans_memory.models.cache import ModelCache
from titans_memory.models.lm import TitansLM


@dataclass
class TitansCausalLMOutput(ModelOutput):
    """``loss`` (with ``labels``), ``logits`` ``(B, T, V)`` and ``titans_cache`` to continue the streams."""

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    titans_cache: ModelCache | None = None


class TitansForCausalLM(PreTrainedModel, GenerationMixin):
    """Causal language model around :class:`TitansLM` (MAC, MAG, MAL, LMM or SWA).

    ``forward(input_ids, attention_mask=None, titans_cache=None, labels=None)``: ``titans_cache``
    is the ``titans_cache`` of the previous output on the same streams (None starts fresh).
    ``attention_mask`` may mark right padding only (zeros after the text): a pad token
    before the text would be written into the memory.
    """

    config_class = TitansConfig
    base_model_prefix = "titans"
    main_input_name = "input_ids"
    _is_stateful = True  # the cache is a recurrent state: no beam search, no assisted decoding
    _supports_cache_class = False
    _no_split_modules = ["SWABlock", "LMMBlock", "MAGBlock", "MALBlock", "MACBlock"]

    def __init__(self, config: TitansConfig) -> None:
        super().__init__(config)
        lm = TitansLM(config.model_config())
        for name, child in lm.named_children():  # TitansLM's parameter names, unprefixed
            self.add_module(name, child)
        self.__dict__["_lm"] = lm  # the same modules, reached through TitansLM's forward
        self.post_init()

    @classmethod
    def _supports_default_dynamic_cache(cls) -> bool:
        return False  # the cache is ours: never let generate() make a DynamicCache

    def _init_weights(self, module: torch.nn.Module) -> None:
        # TitansLM's modules initialise their own parameters. Only the rotary frequencies, a
        # buffer not saved with the weights, need recomputing after loading on the meta device.
        if isinstance(module, Attention):
            with torch.no_grad():
                freqs = rotary_frequencies(module.head_dim, module.rope_base, module.rope_freqs.device)
                module.rope_freqs.copy_(freqs.to(module.rope_freqs.dtype))

    @property
    def titans(self) -> TitansLM:
        """The TitansLM these modules make up (shares every parameter)."""
        return self._lm

    @classmethod
    def from_titans(cls, model: TitansLM, tokenizer: str | None = None) -> TitansForCausalLM:
        """A transformers model with ``model``'s config and a copy of its weights."""
        hf = cls(TitansConfig.from_model_config(model.config, tokenizer=tokenizer))
        hf.load_state_dict(model.state_dict())
        p = model.embed.weight
        return hf.to(device=p.device, dtype=p.dtype)

    def get_input_embeddings(self) -> torch.nn.Module:
        return self.embed

    def get_output_embeddings(self) -> torch.nn.Module:
        return self.head

    @staticmethod
    def _check_mask(mask: torch.Tensor | None) -> None:
        if mask is None:
            return
        m = mask.to(torch.int64)
        if (m[:, 1:] > m[:, :-1]).any():
            raise ValueError(
                "attention_mask has padding before text (left padding): a Titans model would write the pad "
                "tokens into its memory; use right padding or batches of one sequence"
            )

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        titans_cache: ModelCache | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        return_dict: bool | None = None,
        inputs_embeds: torch.Tensor | None = None,
        **kwargs,
    ) -> TitansCausalLMOutput | tuple:
        if inputs_embeds is not None or input_ids is None:
            raise ValueError("TitansForCausalLM needs input_ids (inputs_embeds is not supported)")
        _check_ids(input_ids)
        self._check_mask(attention_mask)
        logits, cache = self._lm(input_ids, titans_cache)  # (B, T, V)
        loss = None
        if labels is not None:  # transformers' convention: labels are the inputs, shifted here
            loss = F.cross_entropy(
                logits[:, :-1].float().flatten(0, 1), labels[:, 1:].flatten().to(logits.device), ignore_index=-100
            )
        out = TitansCausalLMOutput(loss=loss, logits=logits, titans_cache=cache if use_cache is not False else None)
        if return_dict is False:
            return out.to_tuple()
        return out

    # --- generation: the cache travels as `titans_cache` ------------------------------------------
    def generate(self, inputs: torch.Tensor | None = None, generation_config=None, **kwargs):
        """transformers' ``generate``, greedy or sampled; a clear ValueError for what the memory cannot do.

        Refused: ``num_beams > 1`` (and beam groups), contrastive search (``penalty_alpha``) and
        assisted decoding (``assistant_model``, ``prompt_lookup_num_tokens``), which would need the
        memory state reordered or rolled back; an empty ``input_ids``.
        """
        config = generation_config if generation_config is not None else self.generation_config
        def setting(name: str, default=None):
            return kwargs[name] if name in kwargs else getattr(config, name, default)

        for name, allowed in (("num_beams", 1), ("num_beam_groups", 1)):
            value = setting(name, 1)
            if value is not None and value != allowed:
                raise ValueError(
                    f"TitansForCausalLM.generate: {name}={value} is not supported (beam search would need the "
                    "memory state reordered with the beams); use greedy decoding or sampling (num_beams=1)"
                )
        if setting("penalty_alpha") is not None and (setting("top_k") or 0) > 1:
            raise ValueError("TitansForCausalLM.generate: contrastive search (penalty_alpha) is not supported")
        for name in ("assistant_model", "prompt_lookup_num_tokens", "assistant_early_exit"):
            if setting(name) is not None:
                raise ValueError(f"TitansForCausalLM.generate: assisted decoding ({name}) is not supported")
        ids = inputs if inputs is not None else kwargs.get("input_ids")
        if ids is not None:
            _check_ids(ids)
        return super().generate(inputs, generation_config, **kwargs)

    def prepare_inputs_for_generation(
        self, input_ids: torch.LongTensor, titans_cache: ModelCache | None = None, attention_mask=None, **kwargs
    ) -> dict:
        if titans_cache is not None:
            input_ids = input_ids[:, titans_cache.position :]  # only the tokens not yet read
        return {"input_ids": input_ids, "titans_cache": titans_cache, "attention_mask": attention_mask,
                "use_cache": True}

    def _update_model_kwargs_for_generation(self, outputs, model_kwargs, *args, **kwargs) -> dict:
        model_kwargs = super()._update_model_kwargs_for_generation(outputs, model_kwargs, *args, **kwargs)
        model_kwargs["titans_cache"] = outputs.get("titans_cache")
        return model_kwargs


def _check_ids(input_ids: torch.Tensor) -> None:
    """ValueError for ``input_ids`` that are not ``(B, T)`` integers with ``B, T >= 1``."""
    if not isinstance(input_ids, torch.Tensor) or input_ids.dtype.is_floating_point or input_ids.dtype == torch.bool:
        raise ValueError(f"input_ids must be an integer tensor (B, T), got {type(input_ids).__name__}")
    if input_ids.dim() != 2 or input_ids.shape[0] == 0 or input_ids.shape[1] == 0:
        raise ValueError(
            f"input_ids must be (batch, length) with at least one token, got shape {tuple(input_ids.shape)}; "
            "an empty prompt has nothing to continue: start it with a token (e.g. the tokenizer's separator)"
        )
