"""LSTM detector in Flax NNX: event embedding -> stacked LSTM -> objective heads.

Same equations and parameter layout as ``torch.nn.LSTM`` (gate order i, f, g, o; two biases),
stored transposed for right-multiplication: ``w_ih (in, 4H)``, ``w_hh (H, 4H)``. Flax's own
``LSTMCell`` orders gates and carries differently, hence this cell. The input projection of
all time steps is one matrix product hoisted out of the ``lax.scan``; the scan carries only
``h @ w_hh`` (``hoist=False`` projects inside each step, as a textbook cell does: kept to
measure what hoisting buys). ``unroll`` trades compile time for speed.

``Speed.lstm_kernel="cudnn"`` runs each layer as one call of ``jax.experimental.rnn.lstm``
(NVIDIA cuDNN's fused recurrence, GPU only) on the same weights packed into cuDNN's flat layout
(which is torch's: gate order i, f, g, o, ``W_ih (4H, in)``, two biases). That kernel honours
each sequence's length: states after the last real event are zero and the final carries are
taken at the last real event (the scan's run on through the padding); every output the heads
read is the same. ``"cudnn_reference"`` is JAX's own reference implementation of that kernel
(``jax.experimental.rnn.lstm_ref``): same packing and semantics, runs on any device, so the
wiring is tested where no GPU is.

``cfg.lag_window = d > 0``: each event's state from a fresh recurrence over its last d events
(see models_torch.lstm).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import nnx
from jax.experimental import rnn

from models_common.config import DetectorConfig
from models_jax.layers import DEFAULT_SPEED, Dropout, EventEmbedding, Heads, Speed, last_valid


def uniform_init(hidden: int):
    """torch.nn.LSTM/GRU's default: U(-1/sqrt(H), 1/sqrt(H)) for every weight and bias."""
    bound = 1.0 / hidden**0.5

    def init(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
        return jax.random.uniform(key, shape, jnp.float32, -bound, bound)

    return init


def pack_cudnn_weights(
    w_ih: jax.Array, w_hh: jax.Array, b_ih: jax.Array, b_hh: jax.Array
) -> jax.Array:
    """One layer's weights as the flat vector ``jax.experimental.rnn.lstm`` takes: W_ih
    (4H, in), W_hh (4H, H) row-major, then b_ih, b_hh (ours are stored transposed)."""
    return jnp.concatenate([w_ih.T.ravel(), w_hh.T.ravel(), b_ih, b_hh])


def cudnn_reference(x, h_0, c_0, weights, lengths, input_size, hidden_size, layers, dropout, bi):
    """``jax.experimental.rnn.lstm``'s signature over its reference implementation."""
    w_ih, w_hh, b_ih, b_hh = rnn.unpack_lstm_weights(weights, input_size, hidden_size, layers, bi)
    return rnn.lstm_ref(
        x, h_0, c_0, w_ih, w_hh, b_ih, b_hh, lengths, input_size, hidden_size, layers, dropout, bi
    )


LSTM_KERNELS: dict[str, Callable[..., tuple]] = {
    "cudnn": rnn.lstm,
    "cudnn_reference": cudnn_reference,
}


def lag_windows(x: jax.Array, d: int) -> jax.Array:
    """(B, T, E) -> (B * T, d, E): row b * T + t holds events t - d + 1 .. t of sequence b,
    zeros before its first event."""
    b, t, e = x.shape
    padded = jnp.pad(x, ((0, 0), (d - 1, 0), (0, 0)))
    at = jnp.arange(t)[:, None] + jnp.arange(d)[None, :]  # (T, d)
    return padded[:, at].reshape(b * t, d, e)


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
        self, x: jax.Array, unroll: int = 1, hoist: bool = True, carry: tuple | None = None
    ) -> tuple[jax.Array, tuple]:
        """x (B, T, in) -> states (B, T, H) and the final carry (from ``carry``; None: zeros)."""
        w_hh, b_hh = self.w_hh[...], self.b_hh[...]
        if hoist:
            xs = self.project_inputs(x).swapaxes(0, 1)  # (T, B, gates * H)
            step = lambda c, x_t: self.step(c, x_t, w_hh, b_hh)  # noqa: E731
        else:
            xs = x.swapaxes(0, 1)  # (T, B, in)
            step = lambda c, x_t: self.step(c, self.project_inputs(x_t), w_hh, b_hh)  # noqa: E731
        start = self.initial_carry(x.shape[0]) if carry is None else carry
        final, states = jax.lax.scan(step, start, xs, unroll=unroll)
        return states.swapaxes(0, 1), final

    def fused(self, x: jax.Array, lengths: jax.Array, kernel: str) -> tuple[jax.Array, tuple]:
        """x (B, T, in) through one call of a cuDNN-layout kernel (``LSTM_KERNELS``);
        ``lengths`` (B,) int32 real events per sequence."""
        zeros = jnp.zeros((1, x.shape[0], self.hidden), x.dtype)
        weights = pack_cudnn_weights(self.w_ih[...], self.w_hh[...], self.b_ih[...], self.b_hh[...])
        states, h, c = LSTM_KERNELS[kernel](
            x,
            zeros,
            zeros,
            weights.astype(x.dtype),
            lengths,
            x.shape[-1],
            self.hidden,
            1,
            0.0,
            False,
        )
        return states, (h[0], c[0])


class LSTMDetector(nnx.Module):
    layer_type = LSTMLayer

    def __init__(self, cfg: DetectorConfig, rngs: nnx.Rngs, speed: Speed = DEFAULT_SPEED) -> None:
        self.cfg = cfg
        self.unroll = speed.unroll
        self.hoist = speed.hoist
        self.kernel = speed.lstm_kernel
        if self.kernel != "scan" and self.layer_type.gates != 4:
            raise ValueError(f"lstm_kernel={self.kernel!r} is an LSTM kernel; use 'scan'")
        self.embed = EventEmbedding(cfg, rngs, speed)
        sizes = [cfg.embed_dim] + [cfg.hidden_dim] * (cfg.num_layers - 1)
        self.rnn = nnx.List([self.layer_type(n, cfg.hidden_dim, rngs) for n in sizes])
        rate = cfg.dropout if cfg.num_layers > 1 else 0.0
        self.between = Dropout(rate, rngs, speed.fused_dropout)
        self.heads = Heads(cfg, cfg.hidden_dim, rngs)

    def __call__(self, batch: dict, hide: jax.Array | None = None) -> dict:
        x = self.embed(batch, hide)
        b, t, _ = x.shape
        d = self.cfg.lag_window
        if d > 0:
            x = lag_windows(x, d)
            lengths = jnp.full(b * t, d, jnp.int32)  # windows are padded on the left
        else:  # the fused kernels stop each sequence at its last real event
            lengths = jnp.maximum(batch["mask"].sum(axis=1), 1).astype(jnp.int32)
        carries = []
        for i, layer in enumerate(self.rnn):
            if i > 0:  # torch applies dropout to every layer's output but the last
                x = self.between(x)
            if self.kernel == "scan":
                x, carry = layer(x, self.unroll, self.hoist)
            else:  # one layer per call, so that dropout between layers stays ours
                x, carry = layer.fused(x, lengths, self.kernel)
            carries.append(carry)
        if d > 0:
            x = x[:, -1].reshape(b, t, -1)
        pooled = last_valid(x, batch["mask"])
        return self._outputs(x, pooled, batch["mask"], carries)

    def step(self, batch: dict, carries: list[tuple] | None) -> tuple[jax.Array, list[tuple]]:
        """Events (B, t) on from per-layer ``carries`` (None: the start): the top layer's
        states (B, t, H) and each layer's carry after the last of them. Event by event this
        gives the states ``__call__`` gives the whole sequence (eval mode, scan kernel)."""
        x = self.embed(batch)
        out = []
        for i, layer in enumerate(self.rnn):
            if i > 0:
                x = self.between(x)
            x, carry = layer(x, self.unroll, self.hoist, None if carries is None else carries[i])
            out.append(carry)
        return x, out

    def _outputs(self, x: jax.Array, pooled: jax.Array, mask: jax.Array, carries) -> dict:
        final = {"final_hidden": jnp.stack([c[0] for c in carries])}
        if len(carries[0]) == 2:
            final["final_cell"] = jnp.stack([c[1] for c in carries])
        return {**self.heads(x, pooled, mask), "states": x, "pooled": pooled, **final}
