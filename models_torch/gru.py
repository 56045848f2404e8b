"""GRU detector: event embedding -> stacked GRU (cuDNN fast path) -> objective heads.

Equations (torch gate order r, z, n; note the hidden bias ``b_hn`` inside the reset product,
which Flax's GRUCell lacks)::

    r = sigmoid(W_ir x + b_ir + W_hr h + b_hr)
    z = sigmoid(W_iz x + b_iz + W_hz h + b_hz)
    n = tanh(W_in x + b_in + r * (W_hn h + b_hn))
    h' = (1 - z) * n + z * h
"""

from __future__ import annotations

from torch import nn

from models_torch.lstm import LSTMDetector


class GRUDetector(LSTMDetector):
    rnn_type = nn.GRU
