"""Blocks shared by the Flax NNX detectors, twins of ``models_torch.layers``.

Same attribute names as the PyTorch modules, so the weight converter maps names one to one;
the layouts differ only where Flax's own layers differ (``Linear.kernel`` is (in, out), the
transpose of torch's ``weight``). Where Flax defaults differ from PyTorch the choice is set
explicitly: LayerNorm eps 1e-5 and two-pass variance, exact (erf) GELU, embeddings whose
padding row receives no gradient (torch's ``padding_idx``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp
from flax import nnx

from models_common.config import (
    DROP_BITS,
    FORECAST_DIM,
    DetectorConfig,
    Head,
    kept_decisions,
)

LN_EPS = 1e-5
INIT_STD = 0.02  # GPT-2 style init, as models_torch.layers.init_weights

normal_init = nnx.initializers.normal(INIT_STD)


def linear(n_in: int, n_out: int, rngs: nnx.Rngs) -> nnx.Linear:
    return nnx.Linear(
        n_in, n_out, kernel_init=normal_init, bias_init=nnx.initializers.zeros, rngs=rngs
    )


def layer_norm(width: int, rngs: nnx.Rngs) -> nnx.LayerNorm:
    return nnx.LayerNorm(width, epsilon=LN_EPS, use_fast_variance=False, rngs=rngs)


def gelu(x: jax.Array) -> jax.Array:
    return jax.nn.gelu(x, approximate=False)  # torch's F.gelu default


@dataclass(frozen=True)
class Speed:
    """Implementation choices that change speed, never the function computed."""

    unroll: int = 1  # recurrent models: time steps per lax.scan iteration
    hoist: bool = True  # recurrent models: input projections outside the scan
    dense_grad_rows: int = 4096  # embedding tables up to this size: matmul gradient
    lstm_kernel: str = "scan"  # LSTM: lax.scan, or "cudnn" (jax.experimental.rnn, GPU only)
    fused_dropout: bool = True  # dropout masks from keep_mask (False: jax.random.bernoulli)


DEFAULT_SPEED = Speed()

# Threefry-2x32, 20 rounds (Salmon et al. 2011: jax.random's default generator).
THREEFRY_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
THREEFRY_PARITY = 0x1BD11BDA


def threefry2x32(key: jax.Array, x0: jax.Array, x1: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The Threefry-2x32 block function on uint32 counter words, equal to
    ``jax.extend.random.threefry_2x32``; ``key`` is two uint32 words.

    Written out because JAX lowers its own to a five-step loop on CPU that streams both
    words through memory once per step and fuses with nothing; unrolled, XLA fuses the
    rounds with the comparison that turns the bits into a dropout mask."""
    ks = (key[0], key[1], key[0] ^ key[1] ^ jnp.uint32(THREEFRY_PARITY))
    x0, x1 = x0 + ks[0], x1 + ks[1]
    for i in range(5):
        for r in THREEFRY_ROTATIONS[i % 2]:
            x0 = x0 + x1
            x1 = ((x1 << r) | (x1 >> (32 - r))) ^ x0
        x0 = x0 + ks[(i + 1) % 3]
        x1 = x1 + ks[(i + 2) % 3] + jnp.uint32(i + 1)
    return x0, x1


def keep_mask(key: jax.Array, rate: float, shape: tuple[int, ...]) -> tuple[jax.Array, float]:
    """A Bernoulli(keep) mask of dropout at ``rate`` of ``shape``, and ``keep``, the share
    kept once ``kept_decisions`` rounded the rate (0.1 -> keep 0.899994).

    Each Threefry block (counter i, 0) under the step's dropout key gives 64 bits, four
    16-bit decisions: a quarter of the hashing ``jax.random.bernoulli`` does (one block per
    two 32-bit uniforms), in one fused loop instead of a loop over memory."""
    threshold = kept_decisions(rate)
    n = math.prod(shape)
    words = jax.random.key_data(key).reshape(-1).astype(jnp.uint32)
    counters = jnp.arange(-(-n // 4), dtype=jnp.uint32)
    y0, y1 = threefry2x32(words, counters, jnp.zeros_like(counters))
    bits = jax.lax.bitcast_convert_type(jnp.stack([y0, y1], axis=-1), jnp.uint16)
    decisions = bits.reshape(-1)[:n].reshape(shape)
    return decisions.astype(jnp.uint32) < threshold, threshold / 2**DROP_BITS


class Dropout(nnx.Dropout):
    """``nnx.Dropout`` (same switches, streams and eval behaviour) whose masks come from
    ``keep_mask`` unless ``fused`` is off (then ``nnx.Dropout``'s own masks)."""

    def __init__(self, rate: float, rngs: nnx.Rngs, fused: bool = True) -> None:
        super().__init__(rate, rngs=rngs)
        self.fused = fused

    def __call__(self, inputs: jax.Array) -> jax.Array:  # type: ignore[override]  # no rngs=
        if not self.fused:
            return super().__call__(inputs)
        if self.rate == 0.0 or self.deterministic:
            return inputs
        mask, keep = keep_mask(self.rngs(), self.rate, inputs.shape)
        if keep == 0.0:  # a rate within 2^-17 of 1 rounds to dropping everything
            return jnp.zeros_like(inputs)
        return jax.lax.select(
            mask, inputs / jnp.asarray(keep, inputs.dtype), jnp.zeros_like(inputs)
        )


@partial(jax.custom_vjp, nondiff_argnums=(2,))
def _lookup(table: jax.Array, ids: jax.Array, dense_grad: bool) -> jax.Array:
    return table[ids]


def _lookup_fwd(table, ids, dense_grad):
    return table[ids], (ids, table.shape[0])


def _lookup_bwd(dense_grad, residual, grad):
    ids, rows = residual
    flat_ids, flat_grad = ids.reshape(-1), grad.reshape(-1, grad.shape[-1])
    if dense_grad:  # one_hot(ids)^T @ grad: a matrix product instead of a contended scatter
        one_hot = jax.nn.one_hot(flat_ids, rows, dtype=flat_grad.dtype)
        table_grad = jnp.dot(one_hot.T, flat_grad, precision=jax.lax.Precision.HIGHEST)
    else:
        table_grad = jnp.zeros((rows, grad.shape[-1]), grad.dtype).at[flat_ids].add(flat_grad)
    # The padding row (0) gets no gradient, as torch's padding_idx: one row zeroed here
    # instead of a select over every looked-up vector.
    return table_grad.at[0].set(0.0), None


_lookup.defvjp(_lookup_fwd, _lookup_bwd)


class Embedding(nnx.Module):
    """A lookup table whose row 0 (padding) is zero at init and never updated by gradients.

    The gradient of a gather is a scatter-add; on a GPU, many ids hitting a small table
    (event types, buckets) serialise on atomic adds. Tables of at most ``dense_grad_rows``
    rows take their gradient as a one-hot matrix product instead (same values)."""

    def __init__(self, num: int, dim: int, rngs: nnx.Rngs, dense_grad_rows: int = 4096) -> None:
        table = normal_init(rngs.params(), (num, dim), jnp.float32)
        self.embedding = nnx.Param(table.at[0].set(0.0))
        self.dense_grad = num <= dense_grad_rows

    def __call__(self, ids: jax.Array) -> jax.Array:
        return _lookup(self.embedding[...], ids, self.dense_grad)


class EventEmbedding(nnx.Module):
    """Sum of the six per-event field embeddings; ``hide`` positions take the mask vector."""

    def __init__(self, cfg: DetectorConfig, rngs: nnx.Rngs, speed: Speed = DEFAULT_SPEED) -> None:
        d, rows = cfg.embed_dim, speed.dense_grad_rows
        self.event_type = Embedding(cfg.n_event_types, d, rngs, rows)
        self.item = Embedding(cfg.n_items, d, rngs, rows)
        self.category = Embedding(cfg.n_categories, d, rngs, rows)
        self.gap = Embedding(cfg.n_gap_buckets, d, rngs, rows)
        self.price = Embedding(cfg.n_price_buckets, d, rngs, rows)
        self.device_code = Embedding(cfg.n_devices, d, rngs, rows)
        self.mask_vector = nnx.Param(jnp.zeros(d))
        self.dropout = Dropout(cfg.dropout, rngs, speed.fused_dropout)

    def __call__(self, batch: dict, hide: jax.Array | None = None) -> jax.Array:
        x = (
            self.event_type(batch["event_type"])
            + self.item(batch["item"])
            + self.category(batch["category"])
            + self.gap(batch["gap_bucket"])
            + self.price(batch["price_bucket"])
            + self.device_code(batch["device"])
        )
        if hide is not None:
            x = jnp.where(hide[..., None], self.mask_vector[...], x)
        return self.dropout(x)


def attention_mask(mask: jax.Array, causal: bool) -> jax.Array:
    """(B, 1, T, T) boolean: True = may attend (real keys; and earlier ones when causal)."""
    allowed = mask[:, None, None, :]
    if causal:
        t = mask.shape[1]
        allowed = allowed & jnp.tril(jnp.ones((t, t), dtype=bool))
    return allowed


class AttentionBlock(nnx.Module):
    """Pre-norm transformer block: x + MHA(LN(x)), then x + FF(LN(x))."""

    def __init__(
        self,
        width: int,
        heads: int,
        ff_dim: int,
        dropout: float,
        rngs: nnx.Rngs,
        fused_dropout: bool = True,
    ) -> None:
        if width % heads:
            raise ValueError(f"hidden_dim {width} must be divisible by num_heads {heads}")
        self.heads = heads
        self.norm1 = layer_norm(width, rngs)
        self.qkv = linear(width, 3 * width, rngs)
        self.out = linear(width, width, rngs)
        self.norm2 = layer_norm(width, rngs)
        self.ff1 = linear(width, ff_dim, rngs)
        self.ff2 = linear(ff_dim, width, rngs)
        self.dropout = Dropout(dropout, rngs, fused_dropout)
        self.attention_dropout = Dropout(dropout, rngs, fused_dropout)

    def __call__(self, x: jax.Array, allowed: jax.Array) -> jax.Array:
        b, t, w = x.shape
        qkv = self.qkv(self.norm1(x)).reshape(b, t, 3, self.heads, w // self.heads)
        q, k, v = (qkv[:, :, i].transpose(0, 2, 1, 3) for i in range(3))  # (B, heads, T, hs)
        logits = jnp.einsum("bhqd,bhkd->bhqk", q, k) / jnp.sqrt(jnp.float32(w // self.heads))
        logits = jnp.where(allowed, logits, -jnp.inf)
        probs = self.attention_dropout(jax.nn.softmax(logits, axis=-1))
        y = jnp.einsum("bhqk,bhkd->bhqd", probs, v).transpose(0, 2, 1, 3).reshape(b, t, w)
        x = x + self.dropout(self.out(y))
        return x + self.dropout(self.ff2(gelu(self.ff1(self.norm2(x)))))


def last_valid(states: jax.Array, mask: jax.Array) -> jax.Array:
    """(B, H) state at each sequence's last real event."""
    index = jnp.clip(mask.sum(axis=1) - 1, 0)
    return jnp.take_along_axis(states, index[:, None, None], axis=1)[:, 0]


def masked_mean(states: jax.Array, mask: jax.Array) -> jax.Array:
    weights = mask.astype(states.dtype)[..., None]
    return (states * weights).sum(axis=1) / jnp.maximum(weights.sum(axis=1), 1.0)


def masked_max(states: jax.Array, mask: jax.Array) -> jax.Array:
    return jnp.where(mask[..., None], states, -jnp.inf).max(axis=1)


class Heads(nnx.Module):
    """The objective's output layers (see models_torch.layers.Heads)."""

    def __init__(self, cfg: DetectorConfig, width: int, rngs: nnx.Rngs) -> None:
        self.objective = cfg.objective
        self.head = cfg.head
        summary = 2 * width if cfg.head == Head.pooled_max else width
        # Built only when it drops: a dropout module takes its own random stream.
        self.summary_dropout = Dropout(cfg.head_dropout, rngs) if cfg.head_dropout > 0 else None
        if cfg.objective == "classify":
            self.sequence = linear(summary, 1, rngs)
            self.event = linear(width, 1, rngs) if cfg.event_head else None
        elif cfg.objective == "classify_type":
            self.classes = linear(summary, cfg.n_classes, rngs)
        elif cfg.objective in ("next_event", "masked"):
            self.type_logits = linear(width, cfg.n_event_types, rngs)
            self.item_logits = linear(width, cfg.n_items, rngs)
            self.gap_logits = linear(width, cfg.n_gap_buckets, rngs)
        elif cfg.objective == "forecast":
            self.forecast = linear(width, FORECAST_DIM, rngs)
        else:
            raise ValueError(f"unknown objective {cfg.objective!r}")

    def summary(self, states: jax.Array, pooled: jax.Array, mask: jax.Array) -> jax.Array:
        """What a sequence classifier's output layer reads (B, summary width)."""
        if self.head == Head.pooled_max:
            pooled = jnp.concatenate([pooled, masked_max(states, mask)], axis=-1)
        return pooled if self.summary_dropout is None else self.summary_dropout(pooled)

    def __call__(self, states: jax.Array, pooled: jax.Array, mask: jax.Array) -> dict:
        # float32 outputs under bf16 (the adapter leaves these parameters in float32 too).
        states, pooled = states.astype(jnp.float32), pooled.astype(jnp.float32)
        if self.objective == "classify":
            out = {"sequence_logit": self.sequence(self.summary(states, pooled, mask))[:, 0]}
            if self.event is not None:
                out["event_logit"] = self.event(states)[..., 0]
            return out
        if self.objective == "classify_type":
            return {"class_logits": self.classes(self.summary(states, pooled, mask))}
        if self.objective in ("next_event", "masked"):
            return {
                "type_logits": self.type_logits(states),
                "item_logits": self.item_logits(states),
                "gap_logits": self.gap_logits(states),
            }
        return {"forecast": self.forecast(states)}
