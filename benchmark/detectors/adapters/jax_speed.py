"""The timing probe of a JAX detector (``benchmark.timing.protocol.SpeedProbe``).

Workloads call the detector's jitted functions on batches already on the device and return
without waiting (JAX dispatches asynchronously); ``sync`` is ``jax.block_until_ready``. One
device runs its work in order, so blocking on the last call of a window waits for all of them.
Latency requests go from NumPy rows to NumPy scores.

Device memory: XLA reports ``peak_bytes_in_use`` since the process started and offers no
reset, so a per-configuration peak needs one process per configuration (what
``python -m benchmark.speed`` does); within a run it is labelled as the process peak.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from benchmark.detectors.adapters.common import reference_sizes
from benchmark.detectors.adapters.jax_adapter import JaxDetector, split_params
from benchmark.timing.protocol import Workload, as_reference
from datasets.features import SequenceArrays
from models_jax import reference

RECURRENT = ("lstm", "gru")
MB = 2**20


class DetectorProbe:
    def __init__(self, detector: JaxDetector, data: SequenceArrays) -> None:
        self.detector = detector
        self.data = data
        self._saved = None

    def _rows(self, batch_size: int) -> np.ndarray:
        return np.arange(batch_size) % len(self.data)

    def _events(self, rows: np.ndarray) -> int:
        return int(self.data.length[rows].sum())

    @staticmethod
    def sync(handle) -> None:
        jax.block_until_ready(handle)

    def inference(self, batch_size: int) -> Workload:
        d = self.detector
        rows = self._rows(batch_size)
        batch = d._batch(self.data, rows, batch_size)
        return Workload(
            lambda: d._score(d.params, d.rest, batch), self.sync, batch_size, self._events(rows)
        )

    def request(self, batch_size: int) -> Callable[[], np.ndarray]:
        d = self.detector
        rows = self._rows(batch_size)

        def request() -> np.ndarray:
            scores, _, _ = d._score(d.params, d.rest, d._batch(self.data, rows, batch_size))
            return np.asarray(scores)

        return request

    def training(self, batch_size: int) -> Workload:
        d = self.detector
        # Copies on the device: the step donates (and so invalidates) the buffers it is given.
        self._saved = jax.tree.map(jnp.copy, (d.params, d.rest))
        opt_state = d.init_training(total_steps=10**9)
        rows = self._rows(batch_size)
        batch = d._batch(self.data, rows, batch_size)
        with jax.default_device(d.device):
            key = jax.random.key(d.spec.seed)
        state = {"opt": opt_state}

        def step():
            state["opt"], loss = d.train_step(batch, state["opt"], key)
            return loss

        return Workload(step, self.sync, batch_size, self._events(rows))

    def restore(self) -> None:
        if self._saved is not None:
            d = self.detector
            d.params, d.rest = self._saved
            self._saved = None

    def reset_memory(self) -> None:
        """Nothing to reset: XLA keeps one peak per process (see the module docstring)."""

    def device_memory_mb(self) -> dict[str, float]:
        return device_peak_mb(self.detector.device)

    def environment(self) -> dict:
        return environment(self.detector)


class ReferenceProbe:
    """The plain reference model (``models_jax.reference``) at a detector's sizes, run the
    way the Flax documentation shows: ``jax.jit`` over the split model state, optax Adam."""

    def __init__(self, detector: JaxDetector, data: SequenceArrays) -> None:
        self.detector = detector
        self.data = data
        cfg, name = detector.cfg, detector.spec.model.name.value
        dtype = jnp.bfloat16 if detector.bf16 else jnp.float32
        with jax.default_device(detector.device):
            rngs = nnx.Rngs(detector.spec.seed)
            kind, sizes = reference_sizes(cfg, name)
            model = getattr(reference, kind)(**sizes, rngs=rngs, dtype=dtype)
        model.train()
        self.train_graph = nnx.graphdef(model)
        model.eval()
        self.eval_graph, self.params, self.rest = split_params(model)
        self._forward = jax.jit(self._forward_fn)

    def _forward_fn(self, params, rest, item, mask):
        return nnx.merge(self.eval_graph, params, rest, copy=True)(item, mask)

    def _rows(self, batch_size: int) -> np.ndarray:
        return np.arange(batch_size) % len(self.data)

    def _inputs(self, rows: np.ndarray):
        d = self.data
        host = (d.item[rows].astype(np.int32), d.mask[rows], d.label[rows].astype(np.float32))
        return jax.device_put(host, self.detector.device)

    def inference(self, batch_size: int) -> Workload:
        rows = self._rows(batch_size)
        item, mask, _ = self._inputs(rows)
        return Workload(
            lambda: self._forward(self.params, self.rest, item, mask),
            DetectorProbe.sync,
            batch_size,
            int(self.data.length[rows].sum()),
        )

    def request(self, batch_size: int) -> Callable[[], np.ndarray]:
        rows = self._rows(batch_size)

        def request() -> np.ndarray:
            item, mask, _ = self._inputs(rows)
            return np.asarray(self._forward(self.params, self.rest, item, mask))

        return request

    def training(self, batch_size: int) -> Workload:
        tx = optax.adam(1e-3)
        graph = self.train_graph

        def loss_fn(params, rest, item, mask, label):
            model = nnx.merge(graph, params, rest, copy=True)
            logits = model(item, mask)
            loss = optax.sigmoid_binary_cross_entropy(logits, label).mean()
            return loss, nnx.state(model, nnx.Not(nnx.Param))

        @jax.jit
        def train_step(params, opt_state, rest, item, mask, label):
            (loss, rest), grads = jax.value_and_grad(loss_fn, has_aux=True)(
                params, rest, item, mask, label
            )
            updates, opt_state = tx.update(grads, opt_state, params)
            return optax.apply_updates(params, updates), opt_state, rest, loss

        rows = self._rows(batch_size)
        item, mask, label = self._inputs(rows)
        state = {"params": self.params, "opt": tx.init(self.params), "rest": self.rest}

        def step():
            state["params"], state["opt"], state["rest"], loss = train_step(
                state["params"], state["opt"], state["rest"], item, mask, label
            )
            return loss

        return Workload(step, DetectorProbe.sync, batch_size, int(self.data.length[rows].sum()))

    def restore(self) -> None:
        pass  # training worked on its own copies of the state

    def reset_memory(self) -> None:
        pass

    def device_memory_mb(self) -> dict[str, float]:
        return device_peak_mb(self.detector.device)

    def environment(self) -> dict:
        return as_reference(environment(self.detector), "models_jax.reference")


def device_peak_mb(device: jax.Device) -> dict[str, float]:
    """XLA's peak since the process started (the CPU client keeps no statistics)."""
    stats = device.memory_stats() or {}
    if "peak_bytes_in_use" not in stats:
        return {}
    return {
        "device_peak_allocated": stats["peak_bytes_in_use"] / MB,
        "device_peak_is_process_lifetime": True,
    }


def environment(detector: JaxDetector) -> dict:
    f = detector.spec.framework
    device = detector.device
    recurrent = detector.spec.model.name.value in RECURRENT
    return {
        "framework": "jax",
        "version": jax.__version__,
        "device": getattr(device, "device_kind", str(device)),
        "platform": device.platform,
        "platform_version": getattr(device.client, "platform_version", None),
        "preallocate": os.environ.get("XLA_PYTHON_CLIENT_PREALLOCATE", "true"),
        "precision": {
            "compute": "bf16 (heads fp32)" if detector.bf16 else "fp32",
            "default_matmul_precision": jax.config.jax_default_matmul_precision,  # type: ignore[attr-defined]
        },
        "fast_paths": {
            "jit_whole_step": f.compile,
            "donate_buffers": f.donate,
            "length_buckets": list(detector.buckets),
            "scan_unroll": f.scan_unroll if recurrent else None,
            "hoisted_input_projection": detector.speed.hoist if recurrent else None,
            "dense_embedding_grad_rows": detector.speed.dense_grad_rows,
            "fused_dropout_masks": detector.speed.fused_dropout,
            "lstm_kernel": detector.speed.lstm_kernel
            if detector.spec.model.name.value == "lstm"
            else None,
        },
        "compiles": dict(detector.compiles),
    }
