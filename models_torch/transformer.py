"""Transformer detector: event embedding, normalised, + sinusoidal positions -> pre-norm
attention blocks (scaled_dot_product_attention) -> objective heads.

With ``share_layers`` one block is applied ``num_layers`` times (ALBERT's cross-layer sharing).
Attention is causal for objectives that predict the next event (next_event, forecast) and
bidirectional otherwise; padded keys are always masked. The sequence summary is the mean of the
real events' states.
"""

from __future__ import annotations

import torch
from torch import nn

from models_common.config import DetectorConfig, positional_table
from models_torch.layers import (
    LN_EPS,
    AttentionBlock,
    EventEmbedding,
    Heads,
    attention_mask,
    init_weights,
    masked_mean,
)


class TransformerEncoder(nn.Module):
    """Embedding, positions and blocks: per-event states (B, T, H)."""

    positions: torch.Tensor  # a buffer

    def __init__(self, cfg: DetectorConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed = EventEmbedding(cfg)
        self.project = nn.Linear(cfg.embed_dim, cfg.hidden_dim)
        self.input_norm = nn.LayerNorm(cfg.hidden_dim, eps=LN_EPS)
        self.register_buffer(
            "positions",
            torch.from_numpy(positional_table(cfg.max_length, cfg.hidden_dim)),
            persistent=False,
        )
        distinct = 1 if cfg.share_layers else cfg.num_layers
        self.blocks = nn.ModuleList(
            AttentionBlock(cfg.hidden_dim, cfg.num_heads, cfg.ff_dim, cfg.dropout)
            for _ in range(distinct)
        )
        self.norm = nn.LayerNorm(cfg.hidden_dim, eps=LN_EPS)

    def forward(
        self, batch: dict[str, torch.Tensor], hide: torch.Tensor | None = None
    ) -> torch.Tensor:
        return self.encode(self.project(self.embed(batch, hide)), batch["mask"])

    def encode(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """States (B, T, H) of per-event inputs ``x`` (B, T, H): norm, positions, blocks, norm.

        The inputs are normalised before the fixed positions are added: at initialisation the
        summed, projected embeddings are 85-190 times smaller than the unit-scale sinusoid (root
        mean square at the default and smoke sizes), which then drowned what each event is:
        trained on a mix of nine anomaly types for 25 epochs, the Transformer did not learn that
        a purchase stood first (funnel violations: ROC-AUC 0.39 without the norm, 1.00 with)."""
        x = self.input_norm(x) + self.positions[: x.shape[1]]
        allowed = attention_mask(mask, self.cfg.causal)
        for layer in range(self.cfg.num_layers):
            x = self.blocks[layer % len(self.blocks)](x, allowed)
        return self.norm(x)


class TransformerDetector(nn.Module):
    def __init__(self, cfg: DetectorConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = TransformerEncoder(cfg)
        self.heads = Heads(cfg, cfg.hidden_dim)
        init_weights(self)

    def forward(
        self, batch: dict[str, torch.Tensor], hide: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        states = self.encoder(batch, hide)
        pooled = masked_mean(states, batch["mask"])
        return {**self.heads(states, pooled, batch["mask"]), "states": states, "pooled": pooled}
