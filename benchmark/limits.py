"""The range of every number a config holds, in one table, checked before anything runs.

The schema's types make OmegaConf refuse a word where a number belongs; :data:`LIMITS` refuses
a number outside its range (a negative patience, a NaN threshold, a seed beyond what the
frameworks take), naming the key, the value and the range. ``tests/test_config.py`` walks every
numeric field of the schema and fails on one that has no entry here and no owner elsewhere
(:data:`CHECKED_ELSEWHERE`: the anomaly section is checked by the injector, the synthetic
generator's section by the generator, both with the same kind of line).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

INF = math.inf
SEED_LIMIT = 2**32 - 1  # NumPy's legacy seeding, PyTorch and JAX all take seeds this large


@dataclass(frozen=True)
class Limit:
    """A closed or half-open interval; ``hint`` follows the message (the fix, or a meaning)."""

    low: float = -INF
    high: float = INF
    low_open: bool = False
    high_open: bool = False
    hint: str = ""

    def problem(self, key: str, value: float) -> str | None:
        """One line naming ``key=value`` and the range, or None when the value is inside."""
        if isinstance(value, float) and not math.isfinite(value):
            return f"{key}={value} must be a finite number{self.tail()}"
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if self.high_open else value <= self.high
        if above and below:
            return None
        if self.high == INF:
            sign = ">" if self.low_open else ">="
            return f"{key}={value} must be {sign} {number(self.low)}{self.tail()}"
        left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
        span = f"{left}{number(self.low)}, {number(self.high)}{right}"
        return f"{key}={value} is outside {span}{self.tail()}"

    def tail(self) -> str:
        return f" {self.hint}" if self.hint else ""


def number(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


AT_LEAST_1 = Limit(1)
AT_LEAST_0 = Limit(0)
POSITIVE = Limit(0, low_open=True)
SHARE = Limit(0, 1, high_open=True)  # a fraction that cannot be all
OPEN_SHARE = Limit(0, 1, low_open=True, high_open=True)
FINITE = Limit()

LIMITS: dict[str, Limit] = {
    "seed": Limit(0, SEED_LIMIT, hint="(pick e.g. seed=0)"),
    "data_seed": Limit(0, SEED_LIMIT, hint="(pick e.g. data_seed=0, or null to use seed)"),
    "threads": Limit(0, hint="(0 chooses for you)"),
    "dataset.max_rows": Limit(1, hint="(null reads every row)"),
    "dataset.cache_min_mb": AT_LEAST_0,
    "dataset.memory_gb": Limit(0.001, 4096, hint="(null never partitions)"),
    "dataset.workers": Limit(0, hint="(0: one per CPU)"),
    "dataset.sequence.gap_minutes": POSITIVE,
    "dataset.sequence.max_items": Limit(1, hint="(null keeps every item)"),
    "dataset.sequence.max_length": AT_LEAST_1,
    "dataset.sequence.min_length": AT_LEAST_1,
    "dataset.sequence.vocab_min_count": AT_LEAST_1,
    "dataset.split.train": OPEN_SHARE,
    "dataset.split.val": OPEN_SHARE,
    "dataset.split.test": OPEN_SHARE,
    "model.embed_dim": AT_LEAST_1,
    "model.hidden_dim": AT_LEAST_1,
    "model.ff_dim": AT_LEAST_1,
    "model.text_dim": AT_LEAST_1,
    "model.num_heads": AT_LEAST_1,
    "model.num_layers": AT_LEAST_1,
    "model.dropout": SHARE,
    "model.head_dropout": SHARE,
    "model.lag_window": Limit(0, hint="(0: the whole history)"),
    "framework.scan_unroll": AT_LEAST_1,
    "framework.dense_embedding_grad_rows": Limit(0, hint="(0: never; null: per device)"),
    "objective.mask_prob": OPEN_SHARE,
    "objective.top_k": AT_LEAST_1,
    "train.epochs": AT_LEAST_1,
    "train.batch_size": AT_LEAST_1,
    "train.lr": POSITIVE,
    "train.pretrain_lr": POSITIVE,
    "train.pretrain_epochs": AT_LEAST_0,
    "train.warmup": Limit(0, 1, high_open=True, hint="(a share of the training steps)"),
    "train.weight_decay": AT_LEAST_0,
    "train.grad_clip": Limit(0, hint="(0: no clipping)"),
    "train.patience": AT_LEAST_1,
    "timing.windows": AT_LEAST_1,
    "timing.latency_requests": AT_LEAST_1,
    "timing.warmup_steps": AT_LEAST_0,
    "timing.min_window_s": Limit(0, low_open=True, hint="(seconds)"),
    "timing.batch_sizes": AT_LEAST_1,  # each element of the list
    "timing.latency_batch_sizes": AT_LEAST_1,
    "evaluation.bootstrap": Limit(0, hint="(0: no intervals)"),
    "evaluation.target_fpr": SHARE,
    "evaluation.fixed_threshold": FINITE,
    "pca.components": Limit(0, hint="(0: no PCA)"),
    "online.false_alarm_rate": SHARE,
    "online.concurrent_users": AT_LEAST_1,  # each element of the list
    "online.events_per_call": AT_LEAST_1,
    "online.cost_seconds": Limit(0, hint="(seconds; 0: no cost figures)"),
}
CHECKED_ELSEWHERE = ("anomaly.", "dataset.generator.", "reproduction.")


def numeric_leaves(values: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, str, float]]:
    """(dotted key, name to show, value) of every int or float leaf, list elements included
    (``timing.batch_sizes``, ``timing.batch_sizes[1]``); booleans are no numbers here."""
    for key, value in values.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            yield from numeric_leaves(value, f"{path}.")
        elif isinstance(value, list | tuple):
            yield from ((path, f"{path}[{i}]", v) for i, v in enumerate(value) if is_number(v))
        elif is_number(value):
            yield path, path, value


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def first_problem(values: dict[str, Any]) -> str | None:
    """The first number of a resolved config outside its range, as one line."""
    for key, shown, value in numeric_leaves(values):
        limit = LIMITS.get(key)
        problem = limit.problem(shown, value) if limit else None
        if problem:
            return problem
    return None
