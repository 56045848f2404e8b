"""Transformer detector in Flax NNX, twin of ``models_torch.transformer``: event embedding,
normalised, + sinusoidal positions -> pre-norm attention blocks -> objective heads. Causal
attention for the next-step objectives, bidirectional otherwise; padded keys always masked;
mean-pooled summary.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from models_common.config import DetectorConfig, positional_table
from models_jax.layers import (
    DEFAULT_SPEED,
    AttentionBlock,
    EventEmbedding,
    Heads,
    Speed,
    attention_mask,
    layer_norm,
    linear,
    masked_mean,
)


class TransformerEncoder(nnx.Module):
    """Embedding, positions and blocks: per-event states (B, T, H)."""

    def __init__(self, cfg: DetectorConfig, rngs: nnx.Rngs, speed: Speed = DEFAULT_SPEED) -> None:
        self.cfg = cfg
        self.embed = EventEmbedding(cfg, rngs, speed)
        self.project = linear(cfg.embed_dim, cfg.hidden_dim, rngs)
        self.input_norm = layer_norm(cfg.hidden_dim, rngs)
        # A constant, not a parameter (torch: a non-persistent buffer).
        self.positions = nnx.Variable(jnp.asarray(positional_table(cfg.max_length, cfg.hidden_dim)))
        distinct = 1 if cfg.share_layers else cfg.num_layers
        self.blocks = nnx.List(
            AttentionBlock(
                cfg.hidden_dim, cfg.num_heads, cfg.ff_dim, cfg.dropout, rngs, speed.fused_dropout
            )
            for _ in range(distinct)
        )
        self.norm = layer_norm(cfg.hidden_dim, rngs)

    def __call__(self, batch: dict, hide: jax.Array | None = None) -> jax.Array:
        return self.encode(self.project(self.embed(batch, hide)), batch["mask"])

    def encode(self, x: jax.Array, mask: jax.Array) -> jax.Array:
        """States (B, T, H) of per-event inputs ``x`` (B, T, H): norm, positions, blocks, norm.

        The inputs are normalised before the fixed positions are added: at initialisation the
        summed, projected embeddings are 85-190 times smaller than the unit-scale sinusoid (root
        mean square at the default and smoke sizes), which then drowned what each event is:
        trained on a mix of nine anomaly types for 25 epochs, the Transformer did not learn that
        a purchase stood first (funnel violations: ROC-AUC 0.39 without the norm, 1.00 with)."""
        x = self.input_norm(x) + self.positions[...][: x.shape[1]]
        allowed = attention_mask(mask, self.cfg.causal)
        for layer in range(self.cfg.num_layers):  # share_layers: one block, applied repeatedly
            x = self.blocks[layer % len(self.blocks)](x, allowed)
        return self.norm(x)


class TransformerDetector(nnx.Module):
    def __init__(self, cfg: DetectorConfig, rngs: nnx.Rngs, speed: Speed = DEFAULT_SPEED) -> None:
        self.cfg = cfg
        self.encoder = TransformerEncoder(cfg, rngs, speed)
        self.heads = Heads(cfg, cfg.hidden_dim, rngs)

    def __call__(self, batch: dict, hide: jax.Array | None = None) -> dict:
        states = self.encoder(batch, hide)
        pooled = masked_mean(states, batch["mask"])
        return {**self.heads(states, pooled, batch["mask"]), "states": states, "pooled": pooled}
