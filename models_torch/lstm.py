"""LSTM detector: event embedding -> stacked LSTM (cuDNN fast path) -> objective heads.

Equations (torch gate order i, f, g, o; ``W_ih (4H, in)``, ``W_hh (4H, H)``, two biases)::

    i, f, g, o = split(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)
    c_t = sigmoid(f) * c_{t-1} + sigmoid(i) * tanh(g)
    h_t = sigmoid(o) * tanh(c_t)

Unidirectional, on right-padded input without packing: a real event's state never depends on
the padding after it. The sequence summary is the state at the last real event. The final
carries (after the padded steps) are returned too, for parity checks against JAX.

With ``cfg.lag_window = d > 0`` each event's state is a fresh recurrence over the last d events
alone (the lag window [x_{t-d+1} ... x_t]; zero inputs fill the earliest windows on the left):
all B * T windows run as one batch, and the final carries are those of the windows (L, B * T, H).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models_common.config import DetectorConfig
from models_torch.layers import EventEmbedding, Heads, init_weights, last_valid

Carry = tuple[torch.Tensor, torch.Tensor] | torch.Tensor  # LSTM (h, c), GRU h: (L, B, H)


class LSTMDetector(nn.Module):
    rnn_type: type[nn.LSTM] | type[nn.GRU] = nn.LSTM

    def __init__(self, cfg: DetectorConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed = EventEmbedding(cfg)
        self.rnn = self.rnn_type(
            cfg.embed_dim,
            cfg.hidden_dim,
            num_layers=cfg.num_layers,
            batch_first=True,
            dropout=cfg.dropout if cfg.num_layers > 1 else 0.0,
        )
        self.heads = Heads(cfg, cfg.hidden_dim)
        init_weights(self)

    def forward(
        self, batch: dict[str, torch.Tensor], hide: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        x = self.embed(batch, hide)
        if self.cfg.lag_window > 0:
            b, t, _ = x.shape
            window_states, carry = self.rnn(lag_windows(x, self.cfg.lag_window))
            states = window_states[:, -1].reshape(b, t, -1)
        else:
            states, carry = self.rnn(x)  # (B, T, H)
        pooled = last_valid(states, batch["mask"])  # (B, H)
        return {
            **self.heads(states, pooled, batch["mask"]),
            "states": states,
            "pooled": pooled,
            **final_carry(carry),
        }

    def step(
        self, batch: dict[str, torch.Tensor], carry: Carry | None
    ) -> tuple[torch.Tensor, Carry]:
        """Events (B, t) on from ``carry`` (as ``nn.LSTM``/``nn.GRU`` take it; None: the
        start): the top layer's states (B, t, H) and the carry after the last of them. Event
        by event this gives the states ``forward`` gives the whole sequence (eval mode)."""
        states, carry = self.rnn(self.embed(batch), carry)
        return states, carry


def lag_windows(x: torch.Tensor, d: int) -> torch.Tensor:
    """(B, T, E) -> (B * T, d, E): row b * T + t holds events t - d + 1 .. t of sequence b,
    zeros before its first event."""
    b, t, e = x.shape
    padded = F.pad(x, (0, 0, d - 1, 0))  # (B, T + d - 1, E)
    return padded.unfold(1, d, 1).permute(0, 1, 3, 2).reshape(b * t, d, e)


def final_carry(carry) -> dict[str, torch.Tensor]:
    """The recurrence's state after the last (padded) step, per layer (L, B, H)."""
    if isinstance(carry, tuple):  # LSTM: (h, c)
        return {"final_hidden": carry[0], "final_cell": carry[1]}
    return {"final_hidden": carry}
