"""Multimodal attention detector: behaviour, item attributes and user profile fused by
attention whose weights depend on the input.

- behaviour: the transformer encoder's per-event states S (B, T, H);
- item attributes: brand embedding + projected log price per event (z-scored with the training
  split's mean and deviation when the adapter passes them), A (B, T, H);
- profile: the sum of the user's profile-field embeddings, p (B, H).

A query built from the profile (a learned query when there is no profile) attends over S and over
A (``attention_weights`` (B, T) of the behaviour attention are returned for inspection). A gate
``softmax(W [p; c_S; c_A])`` weighs the three modality summaries per sequence (``gates`` (B, 3),
a missing modality gets weight 0); the gated sum is the sequence summary, and per-event states
add the gated item stream to S.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from models_common.config import DetectorConfig
from models_torch.layers import Embedding, Heads, init_weights
from models_torch.transformer import TransformerEncoder

MODALITIES = ("behaviour", "item_attributes", "profile")


class MultimodalAttentionDetector(nn.Module):
    def __init__(self, cfg: DetectorConfig) -> None:
        super().__init__()
        self.cfg = cfg
        h = cfg.hidden_dim
        self.encoder = TransformerEncoder(cfg)
        self.has_items = cfg.n_brands > 0
        self.has_profile = len(cfg.profile_cardinalities) > 0
        if self.has_items:
            self.brand = Embedding(cfg.n_brands, h)
            self.price = nn.Linear(1, h)
        self.profile = nn.ModuleList(Embedding(n, h) for n in cfg.profile_cardinalities)
        self.default_query = nn.Parameter(torch.zeros(h))
        self.query = nn.Linear(h, h)
        self.key_s, self.key_a = nn.Linear(h, h), nn.Linear(h, h)
        self.gate = nn.Linear(3 * h, 3)
        self.heads = Heads(cfg, h)
        init_weights(self)

    @property
    def modalities_used(self) -> tuple[str, ...]:
        return tuple(m for m, on in zip(MODALITIES, self._present(), strict=True) if on)

    def _present(self) -> tuple[bool, bool, bool]:
        return (True, self.has_items, self.has_profile)

    def _attend(
        self, query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Single-query attention: summary (B, H) and weights (B, T) over real events."""
        logits = torch.einsum("bh,bth->bt", query, keys) / math.sqrt(keys.shape[-1])
        weights = torch.softmax(logits.masked_fill(~mask, float("-inf")), dim=-1)
        return torch.einsum("bt,bth->bh", weights, values), weights

    def forward(
        self, batch: dict[str, torch.Tensor], hide: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        mask = batch["mask"]
        states = self.encoder(batch, hide)  # (B, T, H)
        b, _, h = states.shape
        items = torch.zeros_like(states)
        if self.has_items:
            price = (batch["log_price"] - self.cfg.price_mean) / self.cfg.price_std
            items = self.brand(batch["brand"]) + self.price(price[..., None])
        if self.has_profile:
            profile = sum(e(batch["profile"][:, i]) for i, e in enumerate(self.profile))
        else:
            profile = self.default_query.expand(b, h)
        query = self.query(profile)
        c_s, weights = self._attend(query, self.key_s(states), states, mask)
        c_a, _ = self._attend(query, self.key_a(items), items, mask)
        gate_logits = self.gate(torch.cat([c_s, c_a, profile], dim=-1))
        present = torch.tensor(self._present(), device=states.device)
        gates = torch.softmax(gate_logits.masked_fill(~present, float("-inf")), dim=-1)
        pooled = gates[:, 0:1] * c_s + gates[:, 1:2] * c_a + gates[:, 2:3] * profile
        event_states = states + gates[:, 1, None, None] * items
        return {
            **self.heads(event_states, pooled, mask),
            "states": event_states,
            "pooled": pooled,
            "attention_weights": weights,
            "gates": gates,
        }
