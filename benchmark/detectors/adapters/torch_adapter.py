"""PyTorch adapter: NumPy arrays in, NumPy scores out; owns device, precision and training.

Training: AdamW, linear warm-up then cosine (or constant) learning rate, gradient-norm clipping,
early stopping on validation loss with the best weights restored, seeds from the config,
optional bf16 autocast on GPU. The best weights are saved as ``checkpoint.safetensors``.

Speed switches (``framework.*``): ``compile`` wraps the model in ``torch.compile`` (with
``compile_mode``; batches are then padded to length buckets so it sees a few shapes, not one
per longest sequence); ``attention=math`` pins scaled_dot_product_attention to its unfused
kernel; ``tf32`` allows TF32 tensor cores (off by default: float32 means float32);
``fused_optimizer`` makes AdamW one fused kernel; ``fused_dropout`` draws CPU dropout masks
as 16-bit decisions (``models_torch.layers.Dropout``). Recurrent models run cuDNN
``nn.LSTM``/``nn.GRU`` on right-padded input, never packed sequences.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import ExitStack
from typing import cast

import numpy as np
import torch

from benchmark.detectors.adapters import torch_objectives as objectives
from benchmark.detectors.adapters import training
from benchmark.detectors.adapters.common import (
    ID_FIELDS,
    INSPECTED,
    BatchScores,
    bucket_width,
    detector_config,
    event_rows,
    gather_scores,
    length_buckets,
    lr_factor,
    numpy_batch,
    reads_media,
    save_checkpoint,
    steps_online,
    warmup_steps,
)
from benchmark.detectors.registry import DetectorSpec, Scores, register
from benchmark.errors import ConfigError
from datasets.features import SequenceArrays
from models_torch.gru import GRUDetector
from models_torch.layers import use_fast_dropout
from models_torch.lstm import LSTMDetector
from models_torch.multimodal import MultimodalAttentionDetector
from models_torch.transformer import TransformerDetector

MODELS = {
    "lstm": LSTMDetector,
    "gru": GRUDetector,
    "transformer": TransformerDetector,
    "multimodal": MultimodalAttentionDetector,
}


def pick_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            "framework.device=cuda but PyTorch sees no CUDA device (a CPU build, or no GPU): "
            "use framework.device=auto or cpu, or install a CUDA build (make setup-gpu)"
        )
    if name == "cuda" or (name == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


def set_determinism(on: bool) -> None:
    """Process-wide, so set by every run (a sweep's earlier run must not leak its choice).
    With ``on``, an op without a deterministic kernel raises, naming itself, rather than
    silently varying."""
    if on:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # read when cuBLAS starts
    torch.use_deterministic_algorithms(on)
    torch.backends.cudnn.deterministic = on
    torch.backends.cudnn.benchmark = False


def release_memory() -> None:
    """Return the CUDA caching allocator's free blocks (before an out-of-memory retry)."""
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def to_batch(
    arrays: SequenceArrays,
    index: np.ndarray,
    device: torch.device,
    width: int | None = None,
    media: bool = False,
) -> dict:
    """Rows ``index`` as tensors, trimmed to ``width`` (default: the longest sequence among
    them; padding beyond it changes no score, and shorter batches are faster); with
    ``media``, each event's query words and item image."""
    return as_tensors(numpy_batch(arrays, index, width, media), device)


def as_tensors(batch: dict[str, np.ndarray], device: torch.device) -> dict[str, torch.Tensor]:
    """A NumPy batch as model inputs: ids as int64, the mask as bool, the rest float32."""
    out = {}
    for name, rows in batch.items():
        dtype = (
            torch.long if name in ID_FIELDS else (torch.bool if name == "mask" else torch.float32)
        )
        out[name] = torch.as_tensor(rows, dtype=dtype, device=device)
    return out


class TorchDetector:
    def __init__(self, spec: DetectorSpec) -> None:
        self.spec = spec
        self.cfg = detector_config(spec)
        if spec.threads:
            torch.set_num_threads(spec.threads)
        self.device = pick_device(spec.framework.device)
        set_determinism(spec.framework.deterministic)
        torch.manual_seed(spec.seed)
        model = MODELS[spec.model.name.value](self.cfg)
        self.model = use_fast_dropout(model, spec.framework.fused_dropout).to(self.device)
        self.objective = spec.objective.name.value
        f = spec.framework
        self.bf16 = f.precision == "bf16" and self.device.type == "cuda"
        if self.device.type == "cuda":  # process-wide switches; recorded by the timing probe
            torch.backends.cuda.matmul.allow_tf32 = f.tf32
            torch.backends.cudnn.allow_tf32 = f.tf32
        # `net` runs the forward passes; it shares its parameters with `model`.
        self.net = torch.compile(self.model, mode=f.compile_mode) if f.compile else self.model
        self.epoch_hits = torch.zeros((), dtype=torch.long, device=self.device)
        self.buckets = length_buckets(self.cfg.max_length) if f.compile else None

    @property
    def n_params(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    @property
    def modalities_used(self) -> tuple[str, ...]:
        return getattr(self.model, "modalities_used", ("behaviour",))

    def _context(self) -> ExitStack:
        """bf16 autocast and the attention kernel choice, around every forward pass."""
        stack = ExitStack()
        if self.bf16:
            stack.enter_context(torch.autocast("cuda", dtype=torch.bfloat16))
        if self.spec.framework.attention == "math":
            from torch.nn.attention import SDPBackend, sdpa_kernel

            stack.enter_context(sdpa_kernel(SDPBackend.MATH))
        return stack

    def batch(self, data: SequenceArrays, index: np.ndarray) -> dict:
        """Rows ``index`` on the device (padded to a length bucket when compiled)."""
        width = None if self.buckets is None else bucket_width(data.length[index], self.buckets)
        return to_batch(data, index, self.device, width, reads_media(self.cfg))

    def _loss(
        self, batch: dict, generator: torch.Generator | None, stats: dict | None = None
    ) -> torch.Tensor:
        with self._context():
            return objectives.loss(
                self.net,
                batch,
                self.objective,
                self.spec.objective.mask_prob,
                generator,
                hide=batch.get("hide"),
                stats=stats,
            )

    def optimizer(self, total_steps: int):
        """AdamW and its learning-rate schedule over ``total_steps`` optimiser steps."""
        t = self.spec.train
        opt = torch.optim.AdamW(
            self.model.parameters(),
            lr=t.lr,
            weight_decay=t.weight_decay,
            fused=self.spec.framework.fused_optimizer or None,  # None: PyTorch's own choice
        )
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: lr_factor(s, warmup_steps(t, total_steps), total_steps, t.schedule)
        )
        return opt, sched

    def train_step(self, batch: dict, opt, sched, generator: torch.Generator | None):
        """One optimiser step on ``batch``; returns the loss as a device tensor (no sync).
        A classifier's right answers add up in ``epoch_hits`` (on the device too)."""
        stats: dict = {}
        loss = self._loss(batch, generator, stats)
        if "hits" in stats:
            self.epoch_hits += stats["hits"].detach()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.spec.train.grad_clip)
        opt.step()
        sched.step()
        return loss

    def fit(self, train: SequenceArrays, val: SequenceArrays) -> dict:
        return training.fit(self, train, val)

    # --- the steps of the shared training loop (``training.Trainable``) ------------------
    def begin_training(self, total_steps: int) -> None:
        self.opt, self.sched = self.optimizer(total_steps)
        self.generator = torch.Generator().manual_seed(self.spec.seed)

    def begin_epoch(self, epoch: int) -> None:
        self.model.train()
        self.epoch_hits = torch.zeros((), dtype=torch.long, device=self.device)

    def train_batch(self, data: SequenceArrays, index: np.ndarray, step: int) -> torch.Tensor:
        batch = self.batch(data, index)
        return self.train_step(batch, self.opt, self.sched, self.generator).detach()

    def snapshot(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in self.model.state_dict().items()}

    def restore(self, snapshot: dict[str, torch.Tensor]) -> None:
        self.model.load_state_dict(snapshot)

    def fit_details(self) -> dict:
        return {"device": str(self.device), "bf16": self.bf16}

    @torch.no_grad()
    def validation_loss(self, data: SequenceArrays) -> float:
        self.model.eval()
        generator = torch.Generator().manual_seed(self.spec.seed + 1)  # same masks every epoch
        size = self.spec.train.batch_size
        losses = [
            float(self._loss(self.batch(data, np.arange(i, min(i + size, len(data)))), generator))
            * min(size, len(data) - i)
            for i in range(0, len(data), size)
        ]
        return sum(losses) / max(1, len(data))

    @torch.no_grad()
    def score_batch(
        self, batch: dict
    ) -> tuple[torch.Tensor, torch.Tensor | None, dict[str, torch.Tensor]]:
        """Sequence scores, event scores and alternative scores of a device batch, on the
        device (no host sync)."""
        o = self.spec.objective
        with self._context():
            return objectives.sequence_scores(
                self.net, batch, self.objective, o.mask_prob, o.top_k, o.pool.value
            )

    @torch.no_grad()
    def score(self, data: SequenceArrays) -> Scores:
        self.model.eval()
        return gather_scores(len(data), (len(data), data.width), self._score_batches(data))

    def _score_batches(self, data: SequenceArrays) -> Iterator[BatchScores]:
        size = self.spec.train.batch_size
        for first in range(0, len(data), size):
            index = np.arange(first, min(first + size, len(data)))
            s, e, extra = self.score_batch(self.batch(data, index))
            event = None if e is None else e.float().cpu().numpy()
            alternatives = {name: v.float().cpu().numpy() for name, v in extra.items()}
            yield index, s.float().cpu().numpy(), event, alternatives

    @torch.no_grad()
    def represent(self, data: SequenceArrays) -> np.ndarray:
        """(N, H) float32 pooled sequence representations (the heads' input summary)."""
        self.model.eval()
        parts = []
        for first in range(0, len(data), self.spec.train.batch_size):
            index = np.arange(first, min(first + self.spec.train.batch_size, len(data)))
            with self._context():
                pooled = self.net(self.batch(data, index))["pooled"]
            parts.append(pooled.float().cpu().numpy())
        return np.concatenate(parts)

    @torch.no_grad()
    def inspect(self, data: SequenceArrays, index: np.ndarray) -> dict[str, np.ndarray]:
        """The inspectable outputs (``INSPECTED``) of rows ``index``; empty for a model
        without any."""
        self.model.eval()
        with self._context():
            out = self.net(self.batch(data, np.asarray(index)))
        return {k: out[k].float().cpu().numpy() for k in INSPECTED if k in out}

    def stateful_scorer(self) -> TorchRecurrentScorer | None:
        """The online scorer that carries each sequence's state (recurrent detectors with a
        stepped objective); None: the harness rescans a window instead."""
        return TorchRecurrentScorer(self) if steps_online(self.spec) else None

    def canonical_weights(self) -> dict[str, np.ndarray]:
        """The framework-neutral weights (PyTorch names and layouts, float32 NumPy)."""
        return {
            k: v.detach().float().cpu().numpy().copy() for k, v in self.model.state_dict().items()
        }

    def load_weights(self, weights: dict[str, np.ndarray]) -> None:
        state = {k: torch.as_tensor(v) for k, v in weights.items()}
        self.model.load_state_dict(state, strict=True)

    def save_checkpoint(self) -> None:
        metadata = {
            "framework": "torch",
            "model": self.spec.model.name.value,
            "objective": self.objective,
        }
        save_checkpoint(self.spec.run_dir, self.canonical_weights(), metadata)


class TorchRecurrentScorer:
    """Scores events as they arrive: per sequence slot, each layer's carry and the
    objective's running statistics (``torch_objectives.online_step``), on the device."""

    kind = "carried state"

    def __init__(self, detector: TorchDetector) -> None:
        self.detector = detector
        self.model = cast(LSTMDetector, detector.model)  # GRUDetector is one too
        self.lstm = isinstance(self.model.rnn, torch.nn.LSTM)

    def start(self, source: SequenceArrays, slots: int) -> None:
        """Empty state for ``slots`` sequences whose events come from ``source``."""
        cfg, device = self.detector.cfg, self.detector.device
        layers = (cfg.num_layers, slots, cfg.hidden_dim)
        self.source = source
        self.hidden = torch.zeros(layers, device=device)
        self.cell = torch.zeros(layers, device=device) if self.lstm else None
        self.summary = torch.zeros(slots, cfg.hidden_dim, device=device)
        self.total = torch.zeros(slots, device=device)
        self.count = torch.zeros(slots, device=device)
        self.model.eval()  # here, not per push: it walks every module

    def state_bytes(self) -> int:
        """Bytes of state one sequence holds."""
        tables = [self.hidden, self.cell, self.summary, self.total, self.count]
        total = sum(t.numel() * t.element_size() for t in tables if t is not None)
        return total // self.summary.shape[0]

    @torch.no_grad()
    def push(self, slots: np.ndarray, rows: np.ndarray, first: np.ndarray) -> np.ndarray:
        """Events ``rows`` of the source, one for each of the distinct ``slots`` (``first``:
        it opens its sequence): their online scores."""
        device = self.detector.device
        batch = as_tensors(event_rows(self.source, rows), device)
        at = torch.as_tensor(slots, device=device)
        opens = torch.as_tensor(first, device=device)
        keep = (~opens).float()[None, :, None]
        hidden = self.hidden[:, at] * keep
        carry = (hidden, self.cell[:, at] * keep) if self.cell is not None else hidden
        with self.detector._context():
            states, carry = self.model.step(batch, carry)
            carried = (self.summary[at], self.total[at], self.count[at])
            score, carried = objectives.online_step(
                self.model,
                batch,
                states[:, 0].float(),
                carried,
                opens,
                self.detector.objective,
                self.detector.spec.objective.pool.value,
            )
        if isinstance(carry, tuple) and self.cell is not None:
            self.hidden[:, at], self.cell[:, at] = carry
        elif isinstance(carry, torch.Tensor):
            self.hidden[:, at] = carry
        self.summary[at], self.total[at], self.count[at] = carried
        return score.float().cpu().numpy()


for _name in MODELS:
    register("torch", _name)(TorchDetector)
