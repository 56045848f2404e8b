"""PyTorch adapter: NumPy arrays in, NumPy scores out; owns device, precision and training.

Training: AdamW, linear warm-up then cosine (or constant) learning rate, gradient-norm clipping,
early stopping on validation loss with the best weights restored, seeds from the config,
optional bf16 autocast on GPU. The best weights are saved as ``checkpoint.safetensors``.
"""

from __future__ import annotations

import math
import sys
import time
from contextlib import nullcontext
from dataclasses import fields
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from tqdm import tqdm

from benchmark.adapters import torch_objectives as objectives
from benchmark.atomic import atomic_path
from benchmark.detectors import DetectorSpec, Scores, register
from datasets.features import SequenceArrays
from models_common.config import DetectorConfig
from models_torch.gru import GRUDetector
from models_torch.lstm import LSTMDetector
from models_torch.multimodal import MultimodalAttentionDetector
from models_torch.transformer import TransformerDetector

MODELS = {
    "lstm": LSTMDetector,
    "gru": GRUDetector,
    "transformer": TransformerDetector,
    "multimodal": MultimodalAttentionDetector,
}
CHECKPOINT = "checkpoint.safetensors"
LONG_FIELDS = (
    "event_type",
    "item",
    "category",
    "gap_bucket",
    "price_bucket",
    "device",
    "brand",
    "profile",
)


def detector_config(spec: DetectorSpec) -> DetectorConfig:
    m, d = spec.model, spec.data
    multimodal = m.name.value == "multimodal"
    return DetectorConfig(
        n_event_types=d.n_event_types,
        n_items=d.n_items,
        n_categories=d.n_categories,
        n_gap_buckets=d.n_gap_buckets,
        n_price_buckets=d.n_price_buckets,
        n_devices=d.n_devices,
        max_length=d.max_length,
        objective=spec.objective.name.value,
        embed_dim=m.embed_dim,
        hidden_dim=m.hidden_dim,
        num_layers=m.num_layers,
        num_heads=m.num_heads,
        ff_dim=m.ff_dim,
        dropout=m.dropout,
        profile_cardinalities=d.profile_cardinalities if multimodal else (),
        n_brands=d.n_brands if multimodal else 0,
    )


def pick_device(name: str) -> torch.device:
    if name == "cuda" or (name == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


def to_batch(arrays: SequenceArrays, index: np.ndarray, device: torch.device) -> dict:
    """Rows ``index`` as tensors, trimmed to the longest sequence among them (padding beyond
    it changes no score, and shorter batches are faster)."""
    width = max(1, int(arrays.length[index].max()))
    batch = {}
    for f in fields(arrays):
        value = getattr(arrays, f.name)
        if value is None or f.name in ("user_id", "session_id", "length"):
            continue
        rows = value[index]
        if rows.ndim == 2 and f.name != "profile":
            rows = rows[:, :width]
        dtype = (
            torch.long
            if f.name in LONG_FIELDS
            else (torch.bool if f.name == "mask" else torch.float32)
        )
        batch[f.name] = torch.as_tensor(np.ascontiguousarray(rows), dtype=dtype, device=device)
    return batch


def lr_factor(step: int, warmup: int, total: int, schedule: str) -> float:
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


class TorchDetector:
    def __init__(self, spec: DetectorSpec) -> None:
        self.spec = spec
        self.cfg = detector_config(spec)
        self.device = pick_device(spec.framework.device)
        torch.manual_seed(spec.seed)
        self.model = MODELS[spec.model.name.value](self.cfg).to(self.device)
        self.objective = spec.objective.name.value
        self.bf16 = spec.framework.precision == "bf16" and self.device.type == "cuda"

    @property
    def n_params(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    @property
    def modalities_used(self) -> tuple[str, ...]:
        return getattr(self.model, "modalities_used", ("behaviour",))

    def _autocast(self):
        return torch.autocast("cuda", dtype=torch.bfloat16) if self.bf16 else nullcontext()

    def _loss(self, batch: dict, generator: torch.Generator | None) -> torch.Tensor:
        with self._autocast():
            return objectives.loss(
                self.model, batch, self.objective, self.spec.objective.mask_prob, generator
            )

    def fit(self, train: SequenceArrays, val: SequenceArrays) -> dict:
        t = self.spec.train
        rng = np.random.default_rng(self.spec.seed)
        generator = torch.Generator().manual_seed(self.spec.seed)
        opt = torch.optim.AdamW(self.model.parameters(), lr=t.lr, weight_decay=t.weight_decay)
        steps = math.ceil(len(train) / t.batch_size)
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: lr_factor(s, t.warmup_steps, steps * t.epochs, t.schedule)
        )
        history, best, best_state, waited = [], math.inf, None, 0
        start = time.perf_counter()
        for epoch in range(t.epochs):
            train_loss = self._epoch(train, rng, opt, sched, generator, epoch)
            val_loss = self.evaluate_loss(val)
            history.append({"epoch": epoch + 1, "train_loss": train_loss, "val_loss": val_loss})
            if val_loss < best - 1e-4:
                best, waited = val_loss, 0
                best_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
            else:
                waited += 1
                if waited >= t.patience:
                    break
        if not math.isfinite(best):
            raise FloatingPointError("validation loss was never finite: training diverged")
        self.model.load_state_dict(best_state)
        self._save_checkpoint()
        best_epoch = min(history, key=lambda h: h["val_loss"])["epoch"]
        return {
            "epochs": len(history),
            "best_epoch": best_epoch,
            "best_val_loss": best,
            "history": history,
            "fit_seconds": time.perf_counter() - start,
            "device": str(self.device),
            "bf16": self.bf16,
        }

    def _epoch(
        self,
        data: SequenceArrays,
        rng: np.random.Generator,
        opt,
        sched,
        generator: torch.Generator,
        epoch: int,
    ) -> float:
        self.model.train()
        order = rng.permutation(len(data))
        size = self.spec.train.batch_size
        total = torch.zeros((), device=self.device)
        bar = tqdm(
            range(0, len(order), size),
            desc=f"epoch {epoch + 1}",
            unit="batch",
            leave=False,
            disable=not sys.stderr.isatty(),
        )
        seen, start = 0, time.perf_counter()
        for i, first in enumerate(bar):
            batch = to_batch(data, order[first : first + size], self.device)
            loss = self._loss(batch, generator)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.spec.train.grad_clip)
            opt.step()
            sched.step()
            total += loss.detach()
            seen += len(batch["mask"])
            if i % 20 == 0:  # an occasional host sync for the progress bar only
                bar.set_postfix(
                    loss=f"{loss.item():.4f}", seq_s=f"{seen / (time.perf_counter() - start):.0f}"
                )
        loss_mean = float(total) / max(1, len(bar))
        if not math.isfinite(loss_mean):
            raise FloatingPointError(f"training loss became {loss_mean} in epoch {epoch + 1}")
        return loss_mean

    @torch.no_grad()
    def evaluate_loss(self, data: SequenceArrays) -> float:
        self.model.eval()
        generator = torch.Generator().manual_seed(self.spec.seed + 1)  # same masks every epoch
        size = self.spec.train.batch_size
        losses = [
            float(
                self._loss(
                    to_batch(data, np.arange(i, min(i + size, len(data))), self.device), generator
                )
            )
            * min(size, len(data) - i)
            for i in range(0, len(data), size)
        ]
        return sum(losses) / max(1, len(data))

    @torch.no_grad()
    def score(self, data: SequenceArrays) -> Scores:
        self.model.eval()
        seq, event = np.zeros(len(data)), np.zeros(data.mask.shape)
        alt: dict[str, np.ndarray] = {}
        size = self.spec.train.batch_size
        o = self.spec.objective
        for first in range(0, len(data), size):
            index = np.arange(first, min(first + size, len(data)))
            batch = to_batch(data, index, self.device)
            with self._autocast():
                s, e, extra = objectives.sequence_scores(
                    self.model, batch, self.objective, o.mask_prob, o.top_k
                )
            seq[index] = s.float().cpu().numpy()
            event[index, : e.shape[1]] = e.float().cpu().numpy()
            for name, values in extra.items():
                alt.setdefault(name, np.zeros(len(data)))[index] = values.float().cpu().numpy()
        return Scores(seq, event, alt)

    def _save_checkpoint(self) -> None:
        run_dir = self.spec.run_dir
        if run_dir is None:
            return
        state = {k: v.detach().cpu().contiguous() for k, v in self.model.state_dict().items()}
        metadata = {"model": self.spec.model.name.value, "objective": self.objective}
        with atomic_path(Path(run_dir) / CHECKPOINT) as tmp:
            save_file(state, str(tmp), metadata=metadata)


for _name in MODELS:
    register("torch", _name)(TorchDetector)
