"""LSTM detector in Flax NNX: event embedding -> stacked LSTM -> objective heads.

Same equations and parameter layout as ``torch.nn.LSTM`` (gate order i, f, g, o; two biases),
stored transposed for right-multiplication: ``w_ih (in, 4H)``, ``w_hh (H, 4H)``. Flax's own
``LSTMCell`` orders gates and carries differently, hence this cell. The input projection of
all time steps is one matrix product hoisted out of the ``lax.scan``; the scan carries only
``h @ w_hh`` (``hoist=False`` projects inside each step, as a textbook cell does: kept to
measure what hoisting buys). ``unroll`` trades compile time for speed.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from models_common.config import DetectorConfig
from models_jax.layers import DEFAULT_SPEED, EventEmbedding, Heads, Speed, last_valid


def uniform_init(hidden: int):
    """torch.nn.LSTM/GRU's default: U(-1/sqrt(H), 1/sqrt(H)) for every weight and bias."""
    bound = 1.0 / hidden**0.5

    def init(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
        return jax.random.uniform(key, shape, jnp.float32, -bound, bound)

    return init


class LSTMLayer(nnx.Module):
    gates = 4

    def __init__(self, n_in: int, hidden: int, rngs: nnx.Rngs) -> None:
        init = uniform_init(hidden)
        g = self.gates * hidden
        self.hidden = hidden
        self.w_ih = nnx.Param(init(rngs.params(), (n_in, g)))
        self.w_hh = nnx.Param(init(rngs.params(), (hidden, g)))
        self.b_ih = nnx.Param(init(rngs.params(), (g,)))
        self.b_hh = nnx.Param(init(rngs.params(), (g,)))

    def initial_carry(self, batch: int) -> tuple[jax.Array, ...]:
        zeros = jnp.zeros((batch, self.hidden), jnp.float32)
        return (zeros, zeros)

    def step(self, carry: tuple[jax.Array, ...], x_t: jax.Array, w_hh: jax.Array, b_hh):
        """One time step; parameters come in as arrays (read once, outside the scan)."""
        h, c = carry
        i, f, g, o = jnp.split(x_t + h @ w_hh, 4, axis=-1)
        c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
        h = jax.nn.sigmoid(o) * jnp.tanh(c)
        return (h, c), h

    def project_inputs(self, x: jax.Array) -> jax.Array:
        return x @ self.w_ih[...] + self.b_ih[...] + self.b_hh[...]

    def __call__(
        self, x: jax.Array, unroll: int = 1, hoist: bool = True
    ) -> tuple[jax.Array, tuple]:
        """x (B, T, in) -> states (B, T, H) and the final carry."""
        w_hh, b_hh = self.w_hh[...], self.b_hh[...]
        if hoist:
            xs = self.project_inputs(x).swapaxes(0, 1)  # (T, B, gates * H)
            step = lambda c, x_t: self.step(c, x_t, w_hh, b_hh)  # noqa: E731
        else:
            xs = x.swapaxes(0, 1)  # (T, B, in)
            step = lambda c, x_t: self.step(c, self.project_inputs(x_t), w_hh, b_hh)  # noqa: E731
        carry, states = jax.lax.scan(step, self.initial_carry(x.shape[0]), xs, unroll=unroll)
        return states.swapaxes(0, 1), carry


class LSTMDetector(nnx.Module):
    layer_type = LSTMLayer

    def __init__(self, cfg: DetectorConfig, rngs: nnx.Rngs, speed: Speed = DEFAULT_SPEED) -> None:
        self.cfg = cfg
        self.unroll = speed.unroll
        self.hoist = speed.hoist
        self.embed = EventEmbedding(cfg, rngs, speed)
        sizes = [cfg.embed_dim] + [cfg.hidden_dim] * (cfg.num_layers - 1)
        self.rnn = nnx.List([self.layer_type(n, cfg.hidden_dim, rngs) for n in sizes])
        self.between = nnx.Dropout(cfg.dropout if cfg.num_layers > 1 else 0.0, rngs=rngs)
        self.heads = Heads(cfg, cfg.hidden_dim, rngs)

    def __call__(self, batch: dict, hide: jax.Array | None = None) -> dict:
        x = self.embed(batch, hide)
        carries = []
        for i, layer in enumerate(self.rnn):
            if i > 0:  # torch applies dropout to every layer's output but the last
                x = self.between(x)
            x, carry = layer(x, self.unroll, self.hoist)
            carries.append(carry)
        pooled = last_valid(x, batch["mask"])
        final = {"final_hidden": jnp.stack([c[0] for c in carries])}
        if len(carries[0]) == 2:
            final["final_cell"] = jnp.stack([c[1] for c in carries])
        return {**self.heads(x, pooled, batch["mask"]), "states": x, "pooled": pooled, **final}
