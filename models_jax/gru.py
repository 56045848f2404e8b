"""GRU detector in Flax NNX: event embedding -> stacked GRU -> objective heads.

Same equations and layout as ``torch.nn.GRU`` (gate order r, z, n), including the hidden bias
``b_hn`` inside the reset product, which Flax's ``GRUCell`` lacks::

    r = sigmoid(W_ir x + b_ir + W_hr h + b_hr)
    z = sigmoid(W_iz x + b_iz + W_hz h + b_hz)
    n = tanh(W_in x + b_in + r * (W_hn h + b_hn))
    h' = (1 - z) * n + z * h
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from models_jax.lstm import LSTMDetector, LSTMLayer


class GRULayer(LSTMLayer):
    gates = 3

    def initial_carry(self, batch: int) -> tuple[jax.Array, ...]:
        return (jnp.zeros((batch, self.hidden), jnp.float32),)

    def project_inputs(self, x: jax.Array) -> jax.Array:
        return x @ self.w_ih[...] + self.b_ih[...]  # b_hh stays inside the recurrence

    def step(self, carry: tuple[jax.Array, ...], x_t: jax.Array, w_hh: jax.Array, b_hh):
        (h,) = carry
        x_r, x_z, x_n = jnp.split(x_t, 3, axis=-1)
        h_r, h_z, h_n = jnp.split(h @ w_hh + b_hh, 3, axis=-1)
        r = jax.nn.sigmoid(x_r + h_r)
        z = jax.nn.sigmoid(x_z + h_z)
        n = jnp.tanh(x_n + r * h_n)
        h = (1.0 - z) * n + z * h
        return (h,), h


class GRUDetector(LSTMDetector):
    layer_type = GRULayer
