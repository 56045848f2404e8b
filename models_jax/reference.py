"""Plain, untuned reference models in Flax NNX, twins of ``models_torch.reference``.

Stock Flax layers only: ``nnx.Embed``, ``nnx.RNN`` over ``nnx.OptimizedLSTMCell`` /
``nnx.GRUCell``, ``nnx.MultiHeadAttention``; the peers the speed benchmark times beside each
detector. ``dtype`` is the compute dtype (parameters stay float32).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

DROPOUT = 0.1  # torch's nn.TransformerEncoderLayer default, used by both plain models


class PlainRNN(nnx.Module):
    def __init__(
        self,
        cell: str,
        n_items: int,
        embed_dim: int,
        hidden_dim: int,
        layers: int,
        rngs: nnx.Rngs,
        dtype=jnp.float32,
    ):
        self.embed = nnx.Embed(n_items, embed_dim, dtype=dtype, rngs=rngs)
        make = {"lstm": nnx.OptimizedLSTMCell, "gru": nnx.GRUCell}[cell]
        sizes = [embed_dim] + [hidden_dim] * (layers - 1)
        self.rnns = nnx.List([nnx.RNN(make(n, hidden_dim, dtype=dtype, rngs=rngs)) for n in sizes])
        self.between = nnx.Dropout(DROPOUT, rngs=rngs)  # as torch's nn.LSTM(dropout=...)
        self.head = nnx.Linear(hidden_dim, 1, rngs=rngs)

    def __call__(self, item: jax.Array, mask: jax.Array) -> jax.Array:
        x = self.embed(item)
        for i, rnn in enumerate(self.rnns):
            x = rnn(self.between(x) if i > 0 else x)
        last = jnp.clip(mask.sum(axis=1) - 1, 0)
        pooled = jnp.take_along_axis(x, last[:, None, None], axis=1)[:, 0]
        return self.head(pooled.astype(jnp.float32))[:, 0]


class PlainBlock(nnx.Module):
    def __init__(self, width: int, heads: int, ff_dim: int, rngs: nnx.Rngs, dtype=jnp.float32):
        self.norm1 = nnx.LayerNorm(width, dtype=dtype, rngs=rngs)
        self.attention = nnx.MultiHeadAttention(
            heads,
            width,
            dtype=dtype,
            decode=False,
            dropout_rate=DROPOUT,
            deterministic=False,
            rngs=rngs,
        )
        self.norm2 = nnx.LayerNorm(width, dtype=dtype, rngs=rngs)
        self.ff1 = nnx.Linear(width, ff_dim, dtype=dtype, rngs=rngs)
        self.ff2 = nnx.Linear(ff_dim, width, dtype=dtype, rngs=rngs)
        self.dropout = nnx.Dropout(DROPOUT, rngs=rngs)

    def __call__(self, x: jax.Array, allowed: jax.Array) -> jax.Array:
        x = x + self.dropout(self.attention(self.norm1(x), mask=allowed))
        return x + self.dropout(self.ff2(nnx.relu(self.ff1(self.norm2(x)))))


class PlainTransformer(nnx.Module):
    def __init__(
        self,
        n_items: int,
        width: int,
        heads: int,
        ff_dim: int,
        layers: int,
        max_length: int,
        rngs: nnx.Rngs,
        dtype=jnp.float32,
    ):
        self.embed = nnx.Embed(n_items, width, dtype=dtype, rngs=rngs)
        self.position = nnx.Embed(max_length, width, dtype=dtype, rngs=rngs)
        self.blocks = nnx.List(
            [PlainBlock(width, heads, ff_dim, rngs, dtype) for _ in range(layers)]
        )
        self.head = nnx.Linear(width, 1, rngs=rngs)

    def __call__(self, item: jax.Array, mask: jax.Array) -> jax.Array:
        x = self.embed(item) + self.position(jnp.arange(item.shape[1]))
        allowed = mask[:, None, None, :]
        for block in self.blocks:
            x = block(x, allowed)
        weights = mask[..., None].astype(x.dtype)
        pooled = (x * weights).sum(1) / jnp.maximum(weights.sum(1), 1.0)
        return self.head(pooled.astype(jnp.float32))[:, 0]
