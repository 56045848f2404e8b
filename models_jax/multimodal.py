"""Multimodal attention detector in Flax NNX, twin of ``models_torch.multimodal``: behaviour,
item attributes, search text, item images and the user profile fused early (per event) or
late (per sequence); see the PyTorch module for the equations. ``attention_weights`` (B, T),
``gates`` (B, 5) and, for early fusion, ``event_gates`` (B, T, 5) are returned for inspection.
"""

from __future__ import annotations

from typing import cast

import jax
import jax.numpy as jnp
from flax import nnx

from models_common.config import MODALITIES, DetectorConfig, Fusion
from models_jax.layers import DEFAULT_SPEED, Embedding, Heads, Speed, layer_norm, linear
from models_jax.transformer import TransformerEncoder

BEHAVIOUR, ITEMS, TEXT, IMAGE, PROFILE = range(len(MODALITIES))


class ModalityInputs(nnx.Module):
    """Per-event vectors of the non-behaviour modalities, each (B, T, H), the profile (B, H),
    and where each modality is present (B, T, 5)."""

    def __init__(self, cfg: DetectorConfig, rngs: nnx.Rngs, speed: Speed = DEFAULT_SPEED) -> None:
        self.cfg = cfg
        h, rows = cfg.hidden_dim, speed.dense_grad_rows
        if cfg.n_brands:
            self.brand = Embedding(cfg.n_brands, h, rngs, rows)
            self.price = linear(1, h, rngs)
        if cfg.n_words:
            self.words = Embedding(cfg.n_words, cfg.text_dim, rngs, rows)
            self.text = linear(cfg.text_dim, h, rngs)
        if cfg.image_dim:
            self.image = linear(cfg.image_dim, h, rngs)
        self.profile = nnx.List(Embedding(n, h, rngs, rows) for n in cfg.profile_cardinalities)

    @property
    def configured(self) -> tuple[bool, ...]:
        """Which modalities the model has (the data decides: a size of 0 is none)."""
        cfg = self.cfg
        return (
            True,
            cfg.n_brands > 0,
            cfg.n_words > 0,
            cfg.image_dim > 0,
            len(cfg.profile_cardinalities) > 0,
        )

    def __call__(
        self, batch: dict, hide: jax.Array | None
    ) -> tuple[dict[int, jax.Array], jax.Array | None, jax.Array]:
        mask = batch["mask"]
        streams: dict[int, jax.Array] = {}
        present = [mask] * len(MODALITIES)
        if self.cfg.n_brands:
            price = (batch["log_price"] - self.cfg.price_mean) / self.cfg.price_std
            streams[ITEMS] = self.brand(batch["brand"]) + self.price(price[..., None])
        if self.cfg.n_words:
            tokens = batch["query_tokens"]  # (B, T, W), word id + 1, 0 pads
            words = (tokens > 0).astype(jnp.float32)
            summed = jnp.einsum("btw,btwd->btd", words, self.words(tokens))
            streams[TEXT] = self.text(summed / jnp.maximum(words.sum(-1, keepdims=True), 1.0))
            present[TEXT] = mask & (tokens[..., 0] > 0)
        if self.cfg.image_dim:
            image = batch["item_image"]
            streams[IMAGE] = self.image(image)
            present[IMAGE] = mask & (image != 0).any(-1)
        profile = None
        if self.cfg.profile_cardinalities:
            fields = (e(batch["profile"][:, i]) for i, e in enumerate(self.profile))
            profile = cast(jax.Array, sum(fields))  # a sum of arrays, never the start 0
        if hide is not None:  # a hidden event shows nothing of itself (its user, still)
            present = [p if m in (BEHAVIOUR, PROFILE) else p & ~hide for m, p in enumerate(present)]
        on = jnp.stack(present, axis=-1) & jnp.asarray(self.configured)
        return streams, profile, on


def attend(query, keys, values, allowed) -> tuple[jax.Array, jax.Array]:
    """Single-query attention: summary (B, H) and weights (B, T) over the allowed events (all
    weights 0, summary 0, where a row allows none)."""
    logits = jnp.einsum("bh,bth->bt", query, keys) / jnp.sqrt(jnp.float32(keys.shape[-1]))
    weights = masked_softmax(logits, allowed)
    weights = jnp.where(allowed.any(-1, keepdims=True), weights, 0.0)
    return jnp.einsum("bt,bth->bh", weights, values), weights


def masked_softmax(logits: jax.Array, allowed: jax.Array) -> jax.Array:
    return jax.nn.softmax(jnp.where(allowed, logits, -jnp.inf), axis=-1)


def with_behaviour(on: jax.Array) -> jax.Array:
    """``on`` (..., 5) with behaviour always on: a gate over padding has something to weigh."""
    return on | (jnp.arange(on.shape[-1]) == BEHAVIOUR)


class MultimodalAttentionDetector(nnx.Module):
    def __init__(self, cfg: DetectorConfig, rngs: nnx.Rngs, speed: Speed = DEFAULT_SPEED) -> None:
        self.cfg = cfg
        h = cfg.hidden_dim
        self.encoder = TransformerEncoder(cfg, rngs, speed)
        self.inputs = ModalityInputs(cfg, rngs, speed)
        self.default_query = nnx.Param(jnp.zeros(h))
        self.query = linear(h, h, rngs)
        self.key_s = linear(h, h, rngs)
        n = len(MODALITIES)
        if cfg.fusion == Fusion.early:
            self.stream_norms = nnx.List(layer_norm(h, rngs) for _ in MODALITIES)
            self.event_gate = linear(n * h, n, rngs)
        else:
            self.keys = nnx.List(linear(h, h, rngs) for _ in (ITEMS, TEXT, IMAGE))
            self.gate = linear(n * h, n, rngs)
        self.heads = Heads(cfg, h, rngs)

    @property
    def modalities_used(self) -> tuple[str, ...]:
        return tuple(m for m, on in zip(MODALITIES, self.inputs.configured, strict=True) if on)

    def __call__(self, batch: dict, hide: jax.Array | None = None) -> dict:
        mask = batch["mask"]
        streams, profile, on = self.inputs(batch, hide)
        if profile is None:
            profile = jnp.broadcast_to(
                self.default_query[...], (mask.shape[0], self.cfg.hidden_dim)
            )
        fuse = self._early if self.cfg.fusion == Fusion.early else self._late
        states, pooled, extra = fuse(batch, hide, streams, profile, on)
        return {**self.heads(states, pooled, mask), "states": states, "pooled": pooled, **extra}

    def _early(self, batch, hide, streams, profile, on):
        mask = batch["mask"]
        behaviour = self.encoder.project(self.encoder.embed(batch, hide))
        zeros = jnp.zeros_like(behaviour)
        per_event = [behaviour, *(streams.get(m, zeros) for m in (ITEMS, TEXT, IMAGE))]
        per_event.append(jnp.broadcast_to(profile[:, None, :], behaviour.shape))
        # Each stream normalised: at initialisation their root mean squares differ up to 50-fold
        # (behaviour 0.004-0.008, items and images 0.07-0.10, text 0.002), and the items and
        # images drowned what each event is (a purchase moved first went unseen).
        per_event = [norm(u) for norm, u in zip(self.stream_norms, per_event, strict=True)]
        # absent modalities are zeros in the gate's input and weigh nothing in the sum
        per_event = [jnp.where(on[..., m, None], u, 0.0) for m, u in enumerate(per_event)]
        gates = masked_softmax(
            self.event_gate(jnp.concatenate(per_event, axis=-1)), with_behaviour(on)
        )
        fused = jnp.einsum("btm,btmh->bth", gates, jnp.stack(per_event, axis=2))
        states = self.encoder.encode(fused, mask)
        pooled, weights = attend(self.query(profile), self.key_s(states), states, mask)
        real = mask[..., None].astype(gates.dtype)
        mean_gates = (gates * real).sum(1) / jnp.maximum(real.sum(1), 1.0)
        return (
            states,
            pooled,
            {"attention_weights": weights, "gates": mean_gates, "event_gates": gates * real},
        )

    def _late(self, batch, hide, streams, profile, on):
        mask = batch["mask"]
        states = self.encoder(batch, hide)
        query = self.query(profile)
        c_s, weights = attend(query, self.key_s(states), states, mask)
        summaries, event_states = [c_s], states
        for key, m in zip(self.keys, (ITEMS, TEXT, IMAGE), strict=True):
            if m not in streams:
                summaries.append(jnp.zeros_like(c_s))
                continue
            stream = jnp.where(on[..., m, None], streams[m], 0.0)
            summary, _ = attend(query, key(stream), stream, on[..., m])
            summaries.append(summary)
        summaries.append(profile)
        present = with_behaviour(on.any(1))  # (B, 5): each modality somewhere in the sequence
        gates = masked_softmax(self.gate(jnp.concatenate(summaries, axis=-1)), present)
        pooled = jnp.einsum("bm,bmh->bh", gates, jnp.stack(summaries, axis=1))
        for m in (ITEMS, TEXT, IMAGE):
            if m in streams:
                stream = jnp.where(on[..., m, None], streams[m], 0.0)
                event_states = event_states + gates[:, m, None, None] * stream
        return event_states, pooled, {"attention_weights": weights, "gates": gates}
