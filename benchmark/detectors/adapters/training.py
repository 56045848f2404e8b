"""The one training loop of the deep detectors, whatever the framework: epochs over shuffled
batches, the validation loss after each, early stopping with the best weights restored, the
divergence checks and the progress bar. Each adapter supplies its steps (``Trainable``); this
module holds no framework code, so the two frameworks cannot drift apart here."""

from __future__ import annotations

import logging
import math
import sys
import time
from typing import Any, Protocol

import numpy as np
from tqdm import tqdm

from benchmark.detectors.adapters.common import epoch_entry
from benchmark.detectors.registry import DetectorSpec
from benchmark.errors import TrainingDivergedError
from datasets.features import SequenceArrays
from models_common.config import DetectorConfig

log = logging.getLogger("benchmark")

# An epoch's validation loss must beat the best so far by this much to count as better.
MIN_IMPROVEMENT = 1e-4
# Steps between the progress bar's loss readings (each costs a host sync; none without a bar).
BAR_EVERY = 20


class Trainable(Protocol):
    """What the loop asks of a framework adapter. Losses stay on the device until the loop
    reads an epoch's sum (one host sync per epoch)."""

    spec: DetectorSpec
    cfg: DetectorConfig
    epoch_hits: Any  # a classifier's right answers this epoch, counted on the device

    def begin_training(self, total_steps: int) -> None:
        """Build the optimiser and schedule for ``total_steps`` steps, seed the randomness."""
        ...

    def begin_epoch(self, epoch: int) -> None:
        """Training mode, the epoch's random key, ``epoch_hits`` back to zero."""
        ...

    def train_batch(self, data: SequenceArrays, index: np.ndarray, step: int) -> Any:
        """One optimiser step on rows ``index``; the loss as a device scalar, detached."""
        ...

    def validation_loss(self, data: SequenceArrays) -> float: ...

    def snapshot(self) -> Any:
        """A copy of the weights that later steps cannot change."""
        ...

    def restore(self, snapshot: Any) -> None: ...

    def save_checkpoint(self) -> None: ...

    def fit_details(self) -> dict:
        """What the framework adds to the training report (device, precision, compiles)."""
        ...


def fit(trainer: Trainable, train: SequenceArrays, val: SequenceArrays) -> dict:
    """Train ``trainer`` on ``train``, stopping early on ``val``; the training report."""
    t = trainer.spec.train
    rng = np.random.default_rng(trainer.spec.seed)
    trainer.begin_training(math.ceil(len(train) / t.batch_size) * t.epochs)
    history: list[dict] = []
    best, best_weights, waited = math.inf, None, 0
    start = time.perf_counter()
    for epoch in range(t.epochs):
        began = time.perf_counter()
        train_loss = run_epoch(trainer, train, rng.permutation(len(train)), epoch)
        rate = len(train) / max(time.perf_counter() - began, 1e-9)
        val_loss = trainer.validation_loss(val)
        hits, n = trainer.epoch_hits, len(train)
        history.append(epoch_entry(epoch, train_loss, val_loss, hits, n, trainer.cfg))
        seconds = time.perf_counter() - began
        if trainer.spec.on_epoch is not None:
            trainer.spec.on_epoch(history[-1])
        log.info(
            "epoch %d/%d: train loss %.4f, validation loss %.4f, %.0f training seq/s, %.1f s",
            epoch + 1,
            t.epochs,
            train_loss,
            val_loss,
            rate,
            seconds,
        )
        if val_loss < best - MIN_IMPROVEMENT:
            best, best_weights, waited = val_loss, trainer.snapshot(), 0
        else:
            waited += 1
            if waited >= t.patience:
                break
    if best_weights is None or not math.isfinite(best):
        raise TrainingDivergedError("validation loss was never finite")
    trainer.restore(best_weights)
    trainer.save_checkpoint()
    return {
        "epochs": len(history),
        "best_epoch": min(history, key=lambda h: h["val_loss"])["epoch"],
        "best_val_loss": best,
        "history": history,
        "fit_seconds": time.perf_counter() - start,
        **trainer.fit_details(),
    }


def run_epoch(trainer: Trainable, data: SequenceArrays, order: np.ndarray, epoch: int) -> float:
    """One pass over ``data`` in ``order``; the mean of the batches' losses."""
    size = trainer.spec.train.batch_size
    batches = [order[i : i + size] for i in range(0, len(order), size)]
    bar = tqdm(
        batches,
        desc=f"epoch {epoch + 1}/{trainer.spec.train.epochs}",
        unit="batch",
        leave=False,
        disable=not sys.stderr.isatty(),
    )
    trainer.begin_epoch(epoch)
    total: Any = 0.0
    seen, start = 0, time.perf_counter()
    for step, index in enumerate(bar):
        loss = trainer.train_batch(data, index, step)
        total = total + loss
        seen += len(index)
        if step % BAR_EVERY == 0 and not bar.disable:
            rate = seen / (time.perf_counter() - start)
            bar.set_postfix(loss=f"{float(loss):.4f}", seq_s=f"{rate:.0f}")
    loss_mean = float(total) / max(1, len(batches))
    if not math.isfinite(loss_mean):
        raise TrainingDivergedError(f"training loss became {loss_mean} in epoch {epoch + 1}")
    return loss_mean
