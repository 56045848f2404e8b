"""Multimodal attention detector in Flax NNX, twin of ``models_torch.multimodal``: behaviour
states, item attributes and the user profile fused by input-dependent attention and a gate per
modality (see the PyTorch module for the equations). ``attention_weights`` (B, T) and ``gates``
(B, 3) are returned for inspection.
"""

from __future__ import annotations

from typing import cast

import jax
import jax.numpy as jnp
from flax import nnx

from models_common.config import DetectorConfig
from models_jax.layers import DEFAULT_SPEED, Embedding, Heads, Speed, linear
from models_jax.transformer import TransformerEncoder

MODALITIES = ("behaviour", "item_attributes", "profile")


class MultimodalAttentionDetector(nnx.Module):
    def __init__(self, cfg: DetectorConfig, rngs: nnx.Rngs, speed: Speed = DEFAULT_SPEED) -> None:
        self.cfg = cfg
        h = cfg.hidden_dim
        self.encoder = TransformerEncoder(cfg, rngs, speed)
        self.has_items = cfg.n_brands > 0
        self.has_profile = len(cfg.profile_cardinalities) > 0
        if self.has_items:
            self.brand = Embedding(cfg.n_brands, h, rngs, speed.dense_grad_rows)
            self.price = linear(1, h, rngs)
        self.profile = nnx.List(
            Embedding(n, h, rngs, speed.dense_grad_rows) for n in cfg.profile_cardinalities
        )
        self.default_query = nnx.Param(jnp.zeros(h))
        self.query = linear(h, h, rngs)
        self.key_s, self.key_a = linear(h, h, rngs), linear(h, h, rngs)
        self.gate = linear(3 * h, 3, rngs)
        self.heads = Heads(cfg, h, rngs)

    @property
    def modalities_used(self) -> tuple[str, ...]:
        return tuple(m for m, on in zip(MODALITIES, self._present(), strict=True) if on)

    def _present(self) -> tuple[bool, bool, bool]:
        return (True, self.has_items, self.has_profile)

    @staticmethod
    def _attend(query, keys, values, mask) -> tuple[jax.Array, jax.Array]:
        """Single-query attention: summary (B, H) and weights (B, T) over real events."""
        logits = jnp.einsum("bh,bth->bt", query, keys) / jnp.sqrt(jnp.float32(keys.shape[-1]))
        weights = jax.nn.softmax(jnp.where(mask, logits, -jnp.inf), axis=-1)
        return jnp.einsum("bt,bth->bh", weights, values), weights

    def __call__(self, batch: dict, hide: jax.Array | None = None) -> dict:
        mask = batch["mask"]
        states = self.encoder(batch, hide)
        b, _, h = states.shape
        items = jnp.zeros_like(states)
        if self.has_items:
            price = (batch["log_price"] - self.cfg.price_mean) / self.cfg.price_std
            items = self.brand(batch["brand"]) + self.price(price[..., None])
        if self.has_profile:
            fields = (e(batch["profile"][:, i]) for i, e in enumerate(self.profile))
            profile = cast(jax.Array, sum(fields))  # a sum of arrays, never the start 0
        else:
            profile = jnp.broadcast_to(self.default_query[...], (b, h))
        query = self.query(profile)
        c_s, weights = self._attend(query, self.key_s(states), states, mask)
        c_a, _ = self._attend(query, self.key_a(items), items, mask)
        gate_logits = self.gate(jnp.concatenate([c_s, c_a, profile], axis=-1))
        present = jnp.asarray(self._present())
        gates = jax.nn.softmax(jnp.where(present, gate_logits, -jnp.inf), axis=-1)
        pooled = gates[:, 0:1] * c_s + gates[:, 1:2] * c_a + gates[:, 2:3] * profile
        event_states = states + gates[:, 1, None, None] * items
        return {
            **self.heads(event_states, pooled, mask),
            "states": event_states,
            "pooled": pooled,
            "attention_weights": weights,
            "gates": gates,
        }
