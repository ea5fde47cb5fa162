"""Causal attention with persistent memory tokens and rotary positions, in two shapes.

* **Sliding window** (SWA, MAG, MAL and every layer without memory): the query at absolute
  position ``t`` attends to the keys at positions ``t - window < s <= t`` and to the ``N_p``
  persistent tokens.
* **Segment** (MAC, Titans sec. 4.1): the query at position ``t`` of a segment that starts at
  ``s0`` attends to the persistent tokens, to the retrieved memory tokens ``h_s`` and to the
  segment's own tokens ``x_s``, both for ``s0 <= s <= t``.

**Persistent memory** (Titans eq. 19, ``x_new = [p_1 .. p_Np] || x``): ``N_p`` learnable vectors in
the layer's input space, projected to keys and values by the same ``W_K, W_V`` as the tokens. No
mask ever hides them, so every query may attend to them. They have no position: a query meets
them un-rotated, so its score with a persistent token is the same at position 5 and at 50 000.
(Rotating the queries but not the persistent keys, the usual shortcut, makes that score swing
with the query's absolute position.) Both kinds of score go through one softmax by widening the
head: ``q' = [rot(q) | q]``, token keys ``[rot(k) | 0]``, persistent keys ``[0 | k_p]``.

**Rotary positions** use the absolute position of each token (``position`` of the first token of a
call, carried by the cache), so a sequence fed in pieces sees exactly the angles of one call.

The computation goes through :func:`torch.nn.functional.scaled_dot_product_attention` with a
boolean mask (True = may attend). The sliding window is done in blocks of ``Q = min(T, window)``
queries, each against its ``Q + window - 1`` keys, so its cost is linear in ``T`` (about twice the
``window`` keys a query needs), not quadratic. :func:`reference_attention` is the plain masked
softmax over all keys that the tests hold the blocked form to.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn


@dataclass(frozen=True)
class KVCache:
    """Keys (already rotated) and values of the last tokens a layer's attention may still see.

    ``keys`` and ``values`` are ``(batch, heads, length, head_dim)``. For a sliding window the
    length is at most ``window - 1``; for a MAC segment it is the part of the current segment
    already seen (at most ``segment - 1``). Either way it does not grow with the sequence.
    """

    keys: Tensor
    values: Tensor

    @property
    def length(self) -> int:
        return self.keys.shape[2]

    def detach(self) -> KVCache:
        return KVCache(self.keys.detach(), self.values.detach())

    def to(self, *args, **kwargs) -> KVCache:
        return KVCache(self.keys.to(*args, **kwargs), self.values.to(*args, **kwargs))


def rotary_frequencies(head_dim: int, base: float, device=None) -> Tensor:
    """``base^(-2i/d)`` for ``i < d/2``, in float64."""
    return base ** (-torch.arange(head_dim // 2, dtype=torch.float64, device=device) * 2 / head_dim)


def rotary(x: Tensor, positions: Tensor, base: float, freqs: Tensor | None = None) -> Tensor:
    """Rotate channel pairs ``(i, i + d/2)`` of ``x`` by ``position * base^(-2i/d)``.

    Args:
        x: ``(B, H, T, d)`` with ``d`` even.
        positions: ``(T,)`` absolute positions (integers).
        base: the frequency base.
        freqs: :func:`rotary_frequencies` of ``d`` and ``base``, if already at hand.
    """
    half = x.shape[-1] // 2
    if freqs is None:
        freqs = rotary_frequencies(x.shape[-1], base, x.device)
    # angles in float64 whatever x's dtype: position 16k times a frequency must not round away
    angles = positions.to(torch.float64)[:, None] * freqs  # (T, d/2)
    cos = angles.cos().to(x.dtype)
    sin = angles.sin().to(x.dtype)
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


def reference_attention(
    q: Tensor, k: Tensor, v: Tensor, mask: Tensor, scale: float | None = None
) -> Tensor:
    """Plain attention: ``softmax(q k^T * scale + log(mask)) v`` over all keys.

    Args:
        q: ``(B, H, Tq, d)``; k, v: ``(B, H, Tk, d)``; mask: ``(Tq, Tk)`` boolean, True = may attend.
    """
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    scores = (q @ k.transpose(-1, -2)) * scale  # (B, H, Tq, Tk)
    scores = scores.masked_fill(~mask, float("-inf"))
    return torch.softmax(scores, dim=-1) @ v


def _additive(mask: Tensor, dtype: torch.dtype) -> Tensor:
    """A boolean mask (True = may attend) as the additive 0 / -inf mask SDPA adds to the scores.

    On CPU, SDPA's fused kernel takes an additive mask about twice as fast as a boolean one.
    """
    return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill_(~mask, float("-inf"))


def window_mask(queries: Tensor, keys: Tensor, window: int) -> Tensor:
    """``(Tq, Tk)`` boolean: the key at position ``s`` is visible from ``t`` iff ``t - window < s <= t``."""
    diff = queries[:, None] - keys[None, :]
    return (diff >= 0) & (diff < window)


class Attention(nn.Module):
    """Multi-head causal attention with persistent tokens and rotary positions.

    Args:
        dim: model width (input and output of the layer).
        heads: attention heads of ``dim // heads`` channels.
        window: the sliding window of :meth:`sliding` (the query itself included).
        persistent_tokens: ``N_p``, learnable tokens every query attends to.
        rope_base: rotary frequency base.
    """

    def __init__(self, dim: int, heads: int, window: int, persistent_tokens: int, rope_base: float) -> None:
        super().__init__()
        self.dim, self.heads, self.window, self.rope_base = dim, heads, window, rope_base
        self.head_dim = dim // heads
        self.to_qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.to_out = nn.Linear(dim, dim, bias=False)
        self.persistent_tokens = persistent_tokens
        freqs = rotary_frequencies(self.head_dim, rope_base)
        self.register_buffer("rope_freqs", freqs, persistent=False)  # float64 whatever .to() says
        # unit scale, like the RMS-normalised inputs they are prepended to
        self.persistent = (
            nn.Parameter(torch.randn(persistent_tokens, dim)) if persistent_tokens else None
        )  # (N_p, dim)

    # --- projections ----------------------------------------------------------------------------
    def _heads(self, t: Tensor) -> Tensor:
        return rearrange(t, "b t (h d) -> b h t d", h=self.heads)

    def project(
        self, x: Tensor, position: int, qkv: Tensor | None = None
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Queries, keys, values of ``x`` ``(B, T, dim)`` at positions ``position ..``.

        ``qkv`` ``(B, T, 3 dim)``: the projections ``x W_QKV`` when the caller computed them
        (e.g. convolved, :class:`~titans_memory.models.blocks.ConvSWABlock`); default: from ``x``.
        Returns ``(q, k, v, q_raw)``, each ``(B, H, T, d)``: ``q`` and ``k`` rotated by their
        absolute positions, ``q_raw`` the queries before the rotation (for the persistent tokens).
        """
        if qkv is None:
            qkv = self.to_qkv(x)
        q, k, v = map(self._heads, qkv.chunk(3, dim=-1))
        pos = torch.arange(position, position + x.shape[1], device=x.device)
        f = self._freqs(x.device)
        return rotary(q, pos, self.rope_base, f), rotary(k, pos, self.rope_base, f), v, q

    def project_kv(self, x: Tensor, position: int) -> tuple[Tensor, Tensor]:
        """Keys (rotated) and values only; ``(B, H, T, d)`` each."""
        k, v = map(self._heads, F.linear(x, self.to_qkv.weight[self.dim :]).chunk(2, dim=-1))
        pos = torch.arange(position, position + x.shape[1], device=x.device)
        return rotary(k, pos, self.rope_base, self._freqs(x.device)), v

    def _freqs(self, device) -> Tensor:
        # .double() / .half() on the module casts buffers too: recompute when it is not float64
        if self.rope_freqs.dtype != torch.float64:
            return rotary_frequencies(self.head_dim, self.rope_base, device)
        return self.rope_freqs

    def persistent_kv(self, batch: int, dtype: torch.dtype) -> tuple[Tensor, Tensor] | None:
        """Keys and values of the persistent tokens, ``(B, H, N_p, d)`` each; no rotary (no position).

        None when the layer has no persistent tokens.
        """
        if self.persistent is None:
            return None
        kv = F.linear(self.persistent.to(dtype), self.to_qkv.weight[self.dim :])  # (N_p, 2 dim)
        k, v = rearrange(kv, "n (two h d) -> two h n d", two=2, h=self.heads)
        return k.expand(batch, -1, -1, -1), v.expand(batch, -1, -1, -1)

    def _merge(self, out: Tensor) -> Tensor:
        return self.to_out(rearrange(out, "b h t d -> b t (h d)"))

    def _attend(
        self, q: Tensor, q_raw: Tensor, keys: Tensor, values: Tensor, mask: Tensor, batch: int
    ) -> Tensor:
        """Softmax attention of rotated queries over the token keys and the persistent tokens.

        Args:
            q, q_raw: ``(B, H, ..., Tq, d)`` the queries rotated and not.
            keys, values: ``(B, H, ..., Tk, d)`` token keys (rotated) and values.
            mask: ``(..., Tq, Tk)`` boolean, True = may attend; the persistent tokens are added
                in front, visible to every query.
        """
        if not self.persistent_tokens:
            return F.scaled_dot_product_attention(q, keys, values, attn_mask=_additive(mask, q.dtype))
        pk, pv = self.persistent_kv(batch, q.dtype)  # (B, H, N_p, d)
        extra = (1,) * (q.dim() - 4)  # the block axis of the sliding window, if any
        lead = keys.shape[2:-2]
        pk = pk.reshape(*pk.shape[:2], *extra, *pk.shape[2:]).expand(*pk.shape[:2], *lead, *pk.shape[2:])
        pv = pv.reshape(*pv.shape[:2], *extra, *pv.shape[2:]).expand(*pv.shape[:2], *lead, *pv.shape[2:])
        # widened head: rotated queries meet rotated keys, raw queries meet the persistent keys
        q2 = torch.cat([q, q_raw], dim=-1)
        k2 = torch.cat(
            [torch.cat([torch.zeros_like(pk), pk], dim=-1), torch.cat([keys, torch.zeros_like(keys)], dim=-1)],
            dim=-2,
        )
        v2 = torch.cat([pv, values], dim=-2)
        mask = torch.cat([mask.new_ones(*mask.shape[:-1], self.persistent_tokens), mask], dim=-1)
        return F.scaled_dot_product_attention(
            q2, k2, v2, attn_mask=_additive(mask, q.dtype), scale=self.head_dim**-0.5
        )

    # --- sliding window -------------------------------------------------------------------------
    def sliding(
        self, x: Tensor, cache: KVCache | None, position: int, qkv: Tensor | None = None
    ) -> tuple[Tensor, KVCache]:
        """Sliding-window attention of ``x`` ``(B, T, dim)``, the first token at ``position``.

        ``cache`` holds the keys and values of the (at most ``window - 1``) tokens before
        ``position``; the returned cache those before ``position + T``. ``qkv`` ``(B, T, 3 dim)``:
        the projections to use instead of ``x W_QKV`` (see :meth:`project`).
        """
        B, T, _ = x.shape
        q, k, v, q_raw = self.project(x, position, qkv)
        if cache is not None:
            k = torch.cat([cache.keys, k], dim=2)
            v = torch.cat([cache.values, v], dim=2)
        cached = k.shape[2] - T  # L_c <= W - 1
        keep = min(self.window - 1, k.shape[2])
        # a window longer than the keys there are sees them all, as a window of exactly that many
        # does: the band below is then no wider than the keys (a full-attention window of 65,536
        # costs what the sequence costs, not 65,536 keys per query)
        W = min(self.window, k.shape[2])
        # copies, not views: a view would keep every key of a long call alive
        new_cache = KVCache(k[:, :, k.shape[2] - keep :].clone(), v[:, :, v.shape[2] - keep :].clone())
        if T == 0:
            return x.new_zeros(B, 0, self.dim), new_cache

        # Left-pad the keys to W - 1 before the first query: query i then sees padded keys
        # i .. i + W - 1, a band of W, whatever the cache held (the padding is masked out).
        pad = W - 1 - cached
        Q = min(T, W)  # queries per block
        nb = -(-T // Q)
        q = F.pad(q, (0, 0, 0, nb * Q - T))  # (B, H, nb Q, d)
        q_raw = F.pad(q_raw, (0, 0, 0, nb * Q - T))
        k = F.pad(k, (0, 0, pad, nb * Q - T))  # (B, H, W - 1 + nb Q, d)
        v = F.pad(v, (0, 0, pad, nb * Q - T))
        span = Q + W - 1  # keys of one block of queries
        kb = k.unfold(2, span, Q).transpose(-1, -2)  # (B, H, nb, span, d)
        vb = v.unfold(2, span, Q).transpose(-1, -2)
        qb = rearrange(q, "b h (n q) d -> b h n q d", q=Q)
        qb_raw = rearrange(q_raw, "b h (n q) d -> b h n q d", q=Q)

        r = torch.arange(Q, device=x.device)[:, None]
        c = torch.arange(span, device=x.device)[None, :]
        band = (c >= r) & (c <= r + W - 1)  # (Q, span)
        key_index = torch.arange(nb, device=x.device)[:, None] * Q + c  # padded index of each key
        mask = band[None] & (key_index >= pad)[:, None, :]  # (nb, Q, span)

        out = self._attend(qb, qb_raw, kb, vb, mask, B)  # (B, H, nb, Q, d)
        out = rearrange(out, "b h n q d -> b h (n q) d")[:, :, :T]
        return self._merge(out), new_cache

    # --- MAC segment ----------------------------------------------------------------------------
    def segment(
        self,
        x: Tensor,
        h: Tensor,
        cache: tuple[KVCache, KVCache] | None,
        position: int,
    ) -> tuple[Tensor, tuple[KVCache, KVCache]]:
        """Attention over ``[persistent | h | x]`` for a piece of one MAC segment (Titans eqs. 22-23).

        Args:
            x: ``(B, n, dim)`` the piece's (normalised) layer inputs, the first at ``position``.
            h: ``(B, n, dim)`` the memory tokens retrieved for those positions.
            cache: ``(memory-token keys/values, token keys/values)`` of the segment's earlier
                tokens, or None at a segment start.
            position: the absolute position of ``x[:, 0]``.

        Returns:
            ``(y, cache)``: ``y`` ``(B, n, dim)``; ``cache`` extended with the piece. The query at
            position ``t`` sees the persistent tokens and ``h_s``, ``x_s`` for every ``s <= t`` of
            the segment: a memory token is visible only from its own position on, since it was
            retrieved with that position's query (it carries that token's information).
        """
        B, n, _ = x.shape
        q, k, v, q_raw = self.project(x, position)
        hk, hv = self.project_kv(h, position)  # h_s sits at the position of x_s
        if cache is not None:
            hk = torch.cat([cache[0].keys, hk], dim=2)
            hv = torch.cat([cache[0].values, hv], dim=2)
            k = torch.cat([cache[1].keys, k], dim=2)
            v = torch.cat([cache[1].values, v], dim=2)
        L = k.shape[2]  # tokens of the segment so far, this piece included
        causal = torch.arange(L, device=x.device)[None, :] <= torch.arange(L - n, L, device=x.device)[:, None]
        keys, values = torch.cat([hk, k], dim=2), torch.cat([hv, v], dim=2)
        out = self._attend(q, q_raw, keys, values, torch.cat([causal, causal], dim=1), B)
        return self._merge(out), (KVCache(hk, hv), KVCache(k, v))

    def extra_repr(self) -> str:
        return (
            f"dim={self.dim}, heads={self.heads}, window={self.window}, "
            f"persistent_tokens={self.persistent_tokens}"
        )
