"""JAX/Flax adapter: NumPy arrays in, NumPy scores out; the twin of ``torch_adapter``.

Training matches the PyTorch loop step for step: the same batch order (NumPy permutation from
the seed), AdamW with the same decay, learning-rate schedule and PyTorch's gradient-clipping
rule, early stopping on validation loss with the best weights restored. The whole optimiser
step is one ``jax.jit`` with donated parameter and optimiser buffers and no host
synchronisation inside; the loss is read back once per epoch (and now and then for the
progress bar on a terminal).

Fixed shapes: batches are padded to the configured batch size (padding rows carry no loss)
and to a length bucket (powers of two up to ``max_length``), so the step compiles once per
bucket; the compile counts are reported. bf16 on GPU casts parameters and inputs to bfloat16
inside the step while the optimiser keeps float32 weights.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from benchmark.detectors.adapters import jax_objectives as objectives
from benchmark.detectors.adapters import training
from benchmark.detectors.adapters.common import (
    INSPECTED,
    BatchScores,
    bucket_width,
    detector_config,
    event_rows,
    gather_scores,
    length_buckets,
    numpy_batch,
    reads_media,
    save_checkpoint,
    steps_online,
    warmup_steps,
)
from benchmark.detectors.registry import DetectorSpec, Scores, register
from benchmark.errors import ConfigError
from datasets.features import SequenceArrays
from models_jax.convert import load_canonical, to_canonical
from models_jax.gru import GRUDetector
from models_jax.layers import DEFAULT_SPEED, Speed
from models_jax.lstm import LSTMDetector
from models_jax.multimodal import MultimodalAttentionDetector
from models_jax.transformer import TransformerDetector

MODELS = {
    "lstm": LSTMDetector,
    "gru": GRUDetector,
    "transformer": TransformerDetector,
    "multimodal": MultimodalAttentionDetector,
}
FLOAT_FIELDS = ("log_price", "log_gap", "label", "event_label")


def pick_device(name: str) -> jax.Device:
    if name == "cpu":
        return jax.devices("cpu")[0]
    if name == "cuda":
        try:
            return jax.devices("gpu")[0]
        except RuntimeError as error:
            raise ConfigError(
                "framework.device=cuda but JAX sees no GPU: install the gpu extra "
                "(make setup-gpu) or use framework.device=auto"
            ) from error
    return jax.devices()[0]


def schedule_factor(step: jax.Array, warmup: int, total: int, schedule: str) -> jax.Array:
    """``common.lr_factor`` as a traceable function of the optimiser step count."""
    step = jnp.asarray(step, jnp.float32)
    warm = (step + 1) / max(1, warmup)
    if schedule == "constant":
        after = jnp.float32(1.0)
    else:
        progress = jnp.minimum(1.0, (step - warmup) / max(1, total - warmup))
        after = 0.5 * (1.0 + jnp.cos(jnp.pi * progress))
    return jnp.where(step < warmup, warm, after) if warmup > 0 else after


def clip_like_torch(max_norm: float) -> optax.GradientTransformation:
    """``torch.nn.utils.clip_grad_norm_``: scale by min(1, max_norm / (norm + 1e-6))."""

    def update(updates, state, params=None):
        del params
        scale = jnp.minimum(1.0, max_norm / (optax.tree.norm(updates) + 1e-6))
        return jax.tree.map(lambda g: g * scale, updates), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def optimizer(train, total_steps: int) -> optax.GradientTransformation:
    def learning_rate(count):
        return train.lr * schedule_factor(
            count, warmup_steps(train, total_steps), total_steps, train.schedule
        )

    return optax.chain(
        clip_like_torch(train.grad_clip),
        optax.adamw(learning_rate, b1=0.9, b2=0.999, eps=1e-8, weight_decay=train.weight_decay),
    )


def _cast_floats(tree, dtype):
    return jax.tree.map(
        lambda x: x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x, tree
    )


def _to_bf16_outside_heads(path, x: jax.Array) -> jax.Array:
    in_heads = any(getattr(key, "key", None) == "heads" for key in path)
    return x if in_heads else _cast_floats(x, jnp.bfloat16)


DETERMINISTIC_FLAG = "--xla_gpu_deterministic_ops=true"


def request_deterministic_gpu_ops() -> None:
    """XLA reads its flags when the GPU backend starts, i.e. at the first JAX run of a
    process: a process that already ran JAX on the GPU without the flag keeps running
    without it (start a fresh process, or export XLA_FLAGS yourself)."""
    flags = os.environ.get("XLA_FLAGS", "")
    if DETERMINISTIC_FLAG not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} {DETERMINISTIC_FLAG}".strip()


def hoist_inputs(setting: bool | None, device: jax.Device) -> bool:
    """``framework.hoist_inputs`` in force on ``device``: null means off on CPU only."""
    return device.platform != "cpu" if setting is None else setting


def dense_grad_rows(setting: int | None, device: jax.Device) -> int:
    """``framework.dense_embedding_grad_rows`` in force on ``device``: null means one-hot
    gradients for tables up to 4096 rows on accelerators, scatter-adds on CPU."""
    if setting is not None:
        return setting
    return 0 if device.platform == "cpu" else DEFAULT_SPEED.dense_grad_rows


def split_params(model: nnx.Module) -> tuple[nnx.GraphDef, nnx.State, nnx.State]:
    """The model's structure, its trainable parameters and every other variable."""
    graph, *states = nnx.split(model, nnx.Param, ...)
    params, rest = states
    return graph, params, rest


ONE_CPU_THREAD = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"


def limit_cpu_threads(threads: int) -> None:
    """One CPU thread for XLA when asked for one, if its backend has not started yet (XLA
    takes its thread pool once per process; it has no other count than one or all)."""
    from jax._src import xla_bridge

    flags = os.environ.get("XLA_FLAGS", "")
    if threads == 1 and ONE_CPU_THREAD not in flags and not xla_bridge.backends_are_initialized():
        os.environ["XLA_FLAGS"] = f"{flags} {ONE_CPU_THREAD}".strip()


def model_inputs(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A NumPy batch in the dtypes the models take: float32 values, int32 ids."""
    out = {}
    for name, value in batch.items():
        if name in FLOAT_FIELDS:
            out[name] = value.astype(np.float32)
        elif value.dtype.kind in "iu":
            out[name] = value.astype(np.int32)
        else:
            out[name] = value
    return out


class JaxDetector:
    def __init__(self, spec: DetectorSpec) -> None:
        self.spec = spec
        self.cfg = detector_config(spec)
        limit_cpu_threads(spec.threads)
        if spec.framework.deterministic:
            request_deterministic_gpu_ops()
        self.device = pick_device(spec.framework.device)
        if spec.framework.lstm_kernel == "cudnn" and self.device.platform != "gpu":
            raise ConfigError(
                f"framework.lstm_kernel=cudnn needs an NVIDIA GPU (this run's device is "
                f"{self.device.platform}): use framework.lstm_kernel=scan"
            )
        self.objective = spec.objective.name.value
        self.bf16 = spec.framework.precision == "bf16" and self.device.platform == "gpu"
        self.buckets = length_buckets(self.cfg.max_length)
        self.compiles = {"train_step": 0, "eval_loss": 0, "score": 0}
        self.epoch_hits = self._committed(jnp.zeros((), jnp.int32))
        with jax.default_device(self.device):
            rngs = nnx.Rngs(params=spec.seed, dropout=spec.seed + 1)
            f = spec.framework
            self.speed = Speed(
                unroll=f.scan_unroll,
                hoist=hoist_inputs(f.hoist_inputs, self.device),
                dense_grad_rows=dense_grad_rows(f.dense_embedding_grad_rows, self.device),
                lstm_kernel=f.lstm_kernel,
                fused_dropout=f.fused_dropout,
            )
            model = MODELS[spec.model.name.value](self.cfg, rngs, self.speed)
        self.modalities = getattr(model, "modalities_used", ("behaviour",))
        model.train()
        self.train_graph = nnx.graphdef(model)
        model.eval()
        self.eval_graph, params, rest = split_params(model)
        self.params, self.rest = self._committed((params, rest))
        self._build_steps()

    def _committed(self, tree):
        """``tree`` placed on the run's device. A jitted function is compiled per argument
        placement as well as shape: arrays fresh from eager ops are uncommitted, its own
        outputs committed, so without this each length bucket compiles up to three times."""
        return jax.device_put(tree, self.device)

    # --- the jitted pure functions -------------------------------------------------------
    def _build_steps(self) -> None:
        jit = jax.jit if self.spec.framework.compile else (lambda f, **_: f)
        donate = (0, 1, 2) if self.spec.framework.donate else ()
        self._train_step = jit(self._train_step_fn, donate_argnums=donate)
        self._eval_loss = jit(self._eval_loss_fn)
        self._score = jit(self._score_fn)
        self._represent = jit(self._represent_fn)
        self._inspect = jit(self._inspect_fn)

    def _model(self, graph, params, rest):
        if self.bf16:  # the output heads stay float32 (see models_jax.layers.Heads)
            params = jax.tree_util.tree_map_with_path(_to_bf16_outside_heads, params)
            rest = _cast_floats(rest, jnp.bfloat16)
        # copy: fresh Variables belong to this trace (NNX refuses to mutate the RNG counters
        # of Variables rebuilt from an outer trace).
        return nnx.merge(graph, params, rest, copy=True)

    def _hide(self, batch: dict, key: jax.Array) -> jax.Array | None:
        """The masked objective's training mask: ``batch["hide"]`` if given, else drawn."""
        if self.objective != "masked":
            return None
        if "hide" in batch:
            return batch["hide"]
        draw = jax.random.uniform(key, batch["mask"].shape)
        return batch["mask"] & (draw < self.spec.objective.mask_prob)

    def _loss_fn(self, params, rest, batch, key):
        model = self._model(self.train_graph, params, rest)
        stats: dict = {}
        loss = objectives.loss(model, batch, self.objective, self._hide(batch, key), stats)
        hits = stats.get("hits", jnp.zeros((), jnp.int32))
        return loss.astype(jnp.float32), (nnx.state(model, nnx.Not(nnx.Param)), hits)

    def _train_step_fn(self, params, opt_state, rest, hits, batch, key):
        """``hits`` (the epoch's running count of right answers) is carried through the step
        so that counting costs no dispatch of its own."""
        self.compiles["train_step"] += 1  # runs at trace time only
        (loss, (rest, new_hits)), grads = jax.value_and_grad(self._loss_fn, has_aux=True)(
            params, rest, batch, key
        )
        updates, opt_state = self.tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, rest, hits + new_hits, loss

    def _eval_loss_fn(self, params, rest, batch, key):
        self.compiles["eval_loss"] += 1
        model = self._model(self.eval_graph, params, rest)
        return objectives.loss(model, batch, self.objective, self._hide(batch, key))

    def _score_fn(self, params, rest, batch):
        self.compiles["score"] += 1
        model = self._model(self.eval_graph, params, rest)
        o = self.spec.objective
        seq, event, alt = objectives.sequence_scores(
            model, batch, self.objective, o.mask_prob, o.top_k, o.pool.value
        )
        return _cast_floats((seq, event, alt), jnp.float32)

    def _inspect_fn(self, params, rest, batch):
        out = self._model(self.eval_graph, params, rest)(batch)
        return {k: out[k].astype(jnp.float32) for k in INSPECTED if k in out}

    def _represent_fn(self, params, rest, batch):
        model = self._model(self.eval_graph, params, rest)
        return model(batch)["pooled"].astype(jnp.float32)

    # --- batches -------------------------------------------------------------------------
    def _batch(self, data: SequenceArrays, index: np.ndarray, size: int | None = None) -> dict:
        """Rows ``index`` padded to ``size`` rows (default: the training batch size; the
        first row repeated, carrying no loss) and to the smallest length bucket."""
        size = self.spec.train.batch_size if size is None else size
        width = bucket_width(data.length[index], self.buckets)
        n_real = len(index)
        index = np.concatenate([index, np.repeat(index[:1], size - n_real)])
        batch = numpy_batch(data, index, width, reads_media(self.cfg))
        batch["row_valid"] = np.arange(size) < n_real
        return jax.device_put(model_inputs(batch), self.device)

    def _chunks(self, n: int, order: np.ndarray | None = None):
        order = np.arange(n) if order is None else order
        size = self.spec.train.batch_size
        return [order[i : i + size] for i in range(0, n, size)]

    # --- the Detector protocol -----------------------------------------------------------
    @property
    def n_params(self) -> int:
        return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(self.params))

    @property
    def modalities_used(self) -> tuple[str, ...]:
        return self.modalities

    def fit(self, train: SequenceArrays, val: SequenceArrays) -> dict:
        return training.fit(self, train, val)

    # --- the steps of the shared training loop (``training.Trainable``) ------------------
    def begin_training(self, total_steps: int) -> None:
        self.opt_state = self.init_training(total_steps)
        self.key = self._committed(jax.random.key(self.spec.seed))

    def begin_epoch(self, epoch: int) -> None:
        self.key, self.epoch_key = jax.random.split(self.key)
        self.epoch_hits = self._committed(jnp.zeros((), jnp.int32))

    def train_batch(self, data: SequenceArrays, index: np.ndarray, step: int) -> jax.Array:
        key = jax.random.fold_in(self.epoch_key, step)
        self.opt_state, loss = self.train_step(self._batch(data, index), self.opt_state, key)
        return loss

    def snapshot(self):
        return jax.tree.map(np.asarray, self.params)

    def restore(self, snapshot) -> None:
        self.params = self._committed(snapshot)

    def fit_details(self) -> dict:
        return {
            "device": str(self.device),
            "bf16": self.bf16,
            "compiles": dict(self.compiles),
            "length_buckets": list(self.buckets),
        }

    def init_training(self, total_steps: int):
        """Build the optimiser for ``total_steps`` steps; returns its initial state."""
        self.tx = optimizer(self.spec.train, total_steps)
        self._build_steps()  # the jitted step closes over the optimiser
        return self._committed(self.tx.init(self.params))

    def train_step(self, batch: dict, opt_state, key: jax.Array):
        """One optimiser step on a device batch; returns the new optimiser state and the
        loss as a device array (no host sync). A classifier's right answers add up in
        ``epoch_hits`` (on the device too)."""
        self.params, opt_state, self.rest, self.epoch_hits, loss = self._train_step(
            self.params, opt_state, self.rest, self.epoch_hits, batch, key
        )
        return opt_state, loss

    def validation_loss(self, data: SequenceArrays) -> float:
        key = self._committed(jax.random.key(self.spec.seed + 1))  # the same masks every epoch
        losses = [
            self._eval_loss(self.params, self.rest, self._batch(data, index), key) * len(index)
            for index in self._chunks(len(data))
        ]
        return float(sum(losses)) / max(1, len(data))

    def score(self, data: SequenceArrays) -> Scores:
        return gather_scores(len(data), (len(data), data.width), self._score_batches(data))

    def _score_batches(self, data: SequenceArrays) -> Iterator[BatchScores]:
        for index in self._chunks(len(data)):
            s, e, extra = jax.device_get(
                self._score(self.params, self.rest, self._batch(data, index))
            )
            n = len(index)  # the batch is padded to the batch size: drop the padding rows
            event = None if e is None else e[:n]
            yield index, s[:n], event, {name: values[:n] for name, values in extra.items()}

    def represent(self, data: SequenceArrays) -> np.ndarray:
        """(N, H) float32 pooled sequence representations (the heads' input summary)."""
        parts = []
        for index in self._chunks(len(data)):
            pooled = self._represent(self.params, self.rest, self._batch(data, index))
            parts.append(np.asarray(pooled)[: len(index)])  # without the padding rows
        return np.concatenate(parts)

    def inspect(self, data: SequenceArrays, index: np.ndarray) -> dict[str, np.ndarray]:
        """The inspectable outputs (``INSPECTED``) of rows ``index``; empty for a model
        without any."""
        index = np.asarray(index)
        out = self._inspect(self.params, self.rest, self._batch(data, index, len(index)))
        return {k: np.asarray(v) for k, v in out.items()}

    def stateful_scorer(self) -> JaxRecurrentScorer | None:
        """The online scorer that carries each sequence's state (recurrent detectors with a
        stepped objective); None: the harness rescans a window instead."""
        return JaxRecurrentScorer(self) if steps_online(self.spec) else None

    def canonical_weights(self) -> dict[str, np.ndarray]:
        return to_canonical(nnx.merge(self.eval_graph, self.params, self.rest))

    def load_weights(self, weights: dict[str, np.ndarray]) -> None:
        model = nnx.merge(self.eval_graph, self.params, self.rest)
        load_canonical(model, weights)
        _, params, rest = split_params(model)
        self.params, self.rest = self._committed((params, rest))

    def save_checkpoint(self) -> None:
        metadata = {
            "framework": "jax",
            "model": self.spec.model.name.value,
            "objective": self.objective,
        }
        save_checkpoint(self.spec.run_dir, self.canonical_weights(), metadata)


for _name in MODELS:
    register("jax", _name)(JaxDetector)


class JaxRecurrentScorer:
    """Scores events as they arrive: per sequence slot, each layer's carry and the
    objective's running statistics (``jax_objectives.online_step``), in device tables updated
    in place by one jitted step per push. Pushes are padded to a power of two of events (a few
    compiled shapes) into a spare slot."""

    kind = "carried state"

    def __init__(self, detector: JaxDetector) -> None:
        self.detector = detector
        self._advance = jax.jit(self._advance_fn, donate_argnums=(2,))

    def start(self, source: SequenceArrays, slots: int) -> None:
        """Empty state for ``slots`` sequences whose events come from ``source``."""
        cfg = self.detector.cfg
        layers = (cfg.num_layers, slots + 1, cfg.hidden_dim)
        tables = {
            "hidden": jnp.zeros(layers),
            "summary": jnp.zeros((slots + 1, cfg.hidden_dim)),
            "total": jnp.zeros(slots + 1),
            "count": jnp.zeros(slots + 1),
        }
        if self.detector.spec.model.name.value == "lstm":
            tables["cell"] = jnp.zeros(layers)
        self.tables = self.detector._committed(tables)
        self.source, self.spare = source, slots

    def state_bytes(self) -> int:
        """Bytes of state one sequence holds."""
        total = sum(t.size * t.dtype.itemsize for t in self.tables.values())
        return total // (self.spare + 1)

    def _advance_fn(self, params, rest, tables, slots, batch, first):
        model = self.detector._model(self.detector.eval_graph, params, rest)
        keep = (~first)[:, None]
        names = ("hidden", "cell") if "cell" in tables else ("hidden",)
        carries = [
            tuple(tables[n][layer, slots] * keep for n in names)
            for layer in range(tables["hidden"].shape[0])
        ]
        states, carries = model.step(batch, carries)
        carried = (tables["summary"][slots], tables["total"][slots], tables["count"][slots])
        score, carried = objectives.online_step(
            model,
            batch,
            states[:, 0].astype(jnp.float32),
            carried,
            first,
            self.detector.objective,
            self.detector.spec.objective.pool.value,
        )
        new = dict(tables)
        for i, n in enumerate(names):
            new[n] = tables[n].at[:, slots].set(jnp.stack([c[i] for c in carries]))
        for n, value in zip(("summary", "total", "count"), carried, strict=True):
            new[n] = tables[n].at[slots].set(value)
        return score.astype(jnp.float32), new

    def push(self, slots: np.ndarray, rows: np.ndarray, first: np.ndarray) -> np.ndarray:
        """Events ``rows`` of the source, one for each of the distinct ``slots`` (``first``:
        it opens its sequence): their online scores."""
        k = len(slots)
        pad = (1 << max(0, (k - 1).bit_length())) - k
        slots = np.concatenate([slots, np.full(pad, self.spare)]).astype(np.int32)
        rows = np.concatenate([rows, np.repeat(rows[:1], pad)])
        first = np.concatenate([first, np.ones(pad, dtype=bool)])
        batch = model_inputs(event_rows(self.source, rows))
        d = self.detector
        score, self.tables = self._advance(
            d.params, d.rest, self.tables, *d._committed((slots, batch, first))
        )
        return np.asarray(score)[:k]
