"""Multimodal attention detector: behaviour, item attributes, search text, item images and the
user profile, fused early (per event, as the fifth article writes it) or late (per sequence).

Per event t, each modality m the data has gives a vector u_{t,m} of the model width:

- behaviour: the summed event embedding (type, item, category, gap, price, device), projected;
- item attributes: brand embedding + projected log price (z-scored with the training split's
  mean and deviation when the adapter passes them);
- text: the mean of the search query's word embeddings, projected (events without a query
  have none);
- image: the item's image features, projected (items without features have none);
- profile: the sum of the user's profile-field embeddings, the same at every event.

``fusion="early"``: each u_{t,m} is layer-normalised (LN_m); a softmax gate over the modalities
an event has, computed from all of them, weighs them into one input per event,
x_t = sum_m g_{t,m} LN_m(u_{t,m}) (with constant gates, a
projection of their concatenation, the article's E = X (+) U (+) P); a Transformer encodes the
x_t; a query (from the profile, else learned) attends over the states for the sequence summary.
``fusion="late"``: the Transformer encodes the behaviour alone; the profile query attends over
the states and over each other per-event modality, and a softmax gate weighs the summaries.

Returned for inspection: ``attention_weights`` (B, T), the summary's weights over events, and
``gates`` (B, 5), each modality's weight in the order of ``MODALITIES`` (early fusion: the
mean over the sequence's real events; a modality the data lacks: 0), with ``event_gates``
(B, T, 5) for early fusion. Positions hidden by the masked objective show no modality of theirs.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from models_common.config import MODALITIES, DetectorConfig, Fusion
from models_torch.layers import LN_EPS, Embedding, Heads, init_weights
from models_torch.transformer import TransformerEncoder

BEHAVIOUR, ITEMS, TEXT, IMAGE, PROFILE = range(len(MODALITIES))


class ModalityInputs(nn.Module):
    """Per-event vectors of the non-behaviour modalities, each (B, T, H), the profile (B, H),
    and where each modality is present (B, T, 5)."""

    def __init__(self, cfg: DetectorConfig) -> None:
        super().__init__()
        self.cfg = cfg
        h = cfg.hidden_dim
        if cfg.n_brands:
            self.brand = Embedding(cfg.n_brands, h)
            self.price = nn.Linear(1, h)
        if cfg.n_words:
            self.words = Embedding(cfg.n_words, cfg.text_dim)
            self.text = nn.Linear(cfg.text_dim, h)
        if cfg.image_dim:
            self.image = nn.Linear(cfg.image_dim, h)
        self.profile = nn.ModuleList(Embedding(n, h) for n in cfg.profile_cardinalities)

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

    def forward(
        self, batch: dict[str, torch.Tensor], hide: torch.Tensor | None
    ) -> tuple[dict[int, torch.Tensor], torch.Tensor | None, torch.Tensor]:
        mask = batch["mask"]
        streams: dict[int, torch.Tensor] = {}
        present = [mask] * len(MODALITIES)
        if self.cfg.n_brands:
            price = (batch["log_price"] - self.cfg.price_mean) / self.cfg.price_std
            streams[ITEMS] = self.brand(batch["brand"]) + self.price(price[..., None])
        if self.cfg.n_words:
            tokens = batch["query_tokens"]  # (B, T, W), word id + 1, 0 pads
            words = (tokens > 0).to(torch.float32)
            summed = torch.einsum("btw,btwd->btd", words, self.words(tokens))
            streams[TEXT] = self.text(summed / words.sum(-1, keepdim=True).clamp(min=1.0))
            present[TEXT] = mask & (tokens[..., 0] > 0)
        if self.cfg.image_dim:
            image = batch["item_image"]
            streams[IMAGE] = self.image(image)
            present[IMAGE] = mask & (image != 0).any(-1)
        profile = None
        if self.cfg.profile_cardinalities:
            profile = sum(e(batch["profile"][:, i]) for i, e in enumerate(self.profile))
        if hide is not None:  # a hidden event shows nothing of itself (its user, still)
            present = [p if m in (BEHAVIOUR, PROFILE) else p & ~hide for m, p in enumerate(present)]
        on = torch.stack(present, dim=-1) & torch.tensor(self.configured, device=mask.device)
        return streams, profile, on


def attend(
    query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, allowed: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Single-query attention: summary (B, H) and weights (B, T) over the allowed events (all
    weights 0, summary 0, where a row allows none)."""
    logits = torch.einsum("bh,bth->bt", query, keys) / math.sqrt(keys.shape[-1])
    weights = torch.softmax(logits.masked_fill(~allowed, float("-inf")), dim=-1)
    weights = torch.where(allowed.any(-1, keepdim=True), weights, torch.zeros_like(weights))
    return torch.einsum("bt,bth->bh", weights, values), weights


def masked_softmax(logits: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    return torch.softmax(logits.masked_fill(~allowed, float("-inf")), dim=-1)


def with_behaviour(on: torch.Tensor) -> torch.Tensor:
    """``on`` (..., 5) with behaviour always on: a gate over padding has something to weigh."""
    return on | (torch.arange(on.shape[-1], device=on.device) == BEHAVIOUR)


class MultimodalAttentionDetector(nn.Module):
    def __init__(self, cfg: DetectorConfig) -> None:
        super().__init__()
        self.cfg = cfg
        h = cfg.hidden_dim
        self.encoder = TransformerEncoder(cfg)
        self.inputs = ModalityInputs(cfg)
        self.default_query = nn.Parameter(torch.zeros(h))
        self.query = nn.Linear(h, h)
        self.key_s = nn.Linear(h, h)
        n = len(MODALITIES)
        if cfg.fusion == Fusion.early:
            self.stream_norms = nn.ModuleList(nn.LayerNorm(h, eps=LN_EPS) for _ in MODALITIES)
            self.event_gate = nn.Linear(n * h, n)
        else:
            self.keys = nn.ModuleList(nn.Linear(h, h) for _ in (ITEMS, TEXT, IMAGE))
            self.gate = nn.Linear(n * h, n)
        self.heads = Heads(cfg, h)
        init_weights(self)

    @property
    def modalities_used(self) -> tuple[str, ...]:
        return tuple(m for m, on in zip(MODALITIES, self.inputs.configured, strict=True) if on)

    def forward(
        self, batch: dict[str, torch.Tensor], hide: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        mask = batch["mask"]
        streams, profile, on = self.inputs(batch, hide)
        if profile is None:
            profile = self.default_query.expand(mask.shape[0], -1)
        fuse = self._early if self.cfg.fusion == Fusion.early else self._late
        states, pooled, extra = fuse(batch, hide, streams, profile, on)
        return {**self.heads(states, pooled, mask), "states": states, "pooled": pooled, **extra}

    def _early(self, batch, hide, streams, profile, on):
        mask = batch["mask"]
        behaviour = self.encoder.project(self.encoder.embed(batch, hide))
        zeros = torch.zeros_like(behaviour)
        per_event = [behaviour, *(streams.get(m, zeros) for m in (ITEMS, TEXT, IMAGE))]
        per_event.append(profile[:, None, :].expand_as(behaviour))
        # Each stream normalised: at initialisation their root mean squares differ up to 50-fold
        # (behaviour 0.004-0.008, items and images 0.07-0.10, text 0.002), and the items and
        # images drowned what each event is (a purchase moved first went unseen).
        per_event = [norm(u) for norm, u in zip(self.stream_norms, per_event, strict=True)]
        # absent modalities are zeros in the gate's input and weigh nothing in the sum
        per_event = [torch.where(on[..., m, None], u, zeros) for m, u in enumerate(per_event)]
        gates = masked_softmax(self.event_gate(torch.cat(per_event, dim=-1)), with_behaviour(on))
        fused = torch.einsum("btm,btmh->bth", gates, torch.stack(per_event, dim=2))
        states = self.encoder.encode(fused, mask)
        pooled, weights = attend(self.query(profile), self.key_s(states), states, mask)
        real = mask[..., None].to(gates.dtype)
        mean_gates = (gates * real).sum(1) / real.sum(1).clamp(min=1.0)
        return (
            states,
            pooled,
            {
                "attention_weights": weights,
                "gates": mean_gates,
                "event_gates": gates * real,
            },
        )

    def _late(self, batch, hide, streams, profile, on):
        mask = batch["mask"]
        states = self.encoder(batch, hide)
        query = self.query(profile)
        c_s, weights = attend(query, self.key_s(states), states, mask)
        summaries, event_states = [c_s], states
        for key, m in zip(self.keys, (ITEMS, TEXT, IMAGE), strict=True):
            if m not in streams:
                summaries.append(torch.zeros_like(c_s))
                continue
            stream = torch.where(on[..., m, None], streams[m], torch.zeros_like(streams[m]))
            summary, _ = attend(query, key(stream), stream, on[..., m])
            summaries.append(summary)
        summaries.append(profile)
        present = with_behaviour(on.any(1))  # (B, 5): each modality somewhere in the sequence
        gates = masked_softmax(self.gate(torch.cat(summaries, dim=-1)), present)
        pooled = torch.einsum("bm,bmh->bh", gates, torch.stack(summaries, dim=1))
        for m in (ITEMS, TEXT, IMAGE):
            if m in streams:
                stream = torch.where(on[..., m, None], streams[m], torch.zeros_like(streams[m]))
                event_states = event_states + gates[:, m, None, None] * stream
        return event_states, pooled, {"attention_weights": weights, "gates": gates}
