"""Plain, untuned reference models: the peers the speed benchmark times beside each detector.

Written the way a first implementation would be, from stock PyTorch layers only: one item
embedding, ``nn.LSTM``/``nn.GRU`` or ``nn.TransformerEncoder``, a linear head. They are not
detectors (they read item ids only); they say what speed the same sizes give without this
project's choices, so every detector's number has a peer measured in the same run.
"""

from __future__ import annotations

import torch
from torch import nn

DROPOUT = 0.1  # nn.TransformerEncoderLayer's default, used by both plain models


class PlainRNN(nn.Module):
    """Embedding -> stacked nn.LSTM / nn.GRU (dropout between layers) -> linear head on the
    last real event."""

    def __init__(self, cell: str, n_items: int, embed_dim: int, hidden_dim: int, layers: int):
        super().__init__()
        self.embed = nn.Embedding(n_items, embed_dim)
        rnn = {"lstm": nn.LSTM, "gru": nn.GRU}[cell]
        dropout = DROPOUT if layers > 1 else 0.0
        self.rnn = rnn(embed_dim, hidden_dim, num_layers=layers, batch_first=True, dropout=dropout)
        self.head = nn.Linear(hidden_dim, 1)

    def forward(self, item: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        states, _ = self.rnn(self.embed(item))
        last = (mask.sum(dim=1) - 1).clamp(min=0)
        return self.head(states[torch.arange(len(item), device=item.device), last])[:, 0]


class PlainTransformer(nn.Module):
    """Embedding -> nn.TransformerEncoder (pre-norm) -> mean over real events -> linear."""

    def __init__(
        self, n_items: int, width: int, heads: int, ff_dim: int, layers: int, max_length: int
    ):
        super().__init__()
        self.embed = nn.Embedding(n_items, width)
        self.position = nn.Embedding(max_length, width)
        layer = nn.TransformerEncoderLayer(
            width, heads, ff_dim, dropout=DROPOUT, batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Linear(width, 1)

    def forward(self, item: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(item.shape[1], device=item.device)
        x = self.encoder(self.embed(item) + self.position(positions), src_key_padding_mask=~mask)
        weights = mask[..., None].to(x.dtype)
        return self.head((x * weights).sum(1) / weights.sum(1).clamp(min=1.0))[:, 0]
