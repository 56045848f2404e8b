"""Training losses and anomaly scores of the five objectives for Flax models: the twin of
``torch_objectives`` (same definitions, checked by the parity tests).

Two additions for fixed shapes under ``jit``: ``row_valid`` (B,) marks the real rows of a batch
padded up to its compiled size (padding rows carry no loss), and the masked objective's
training mask ``hide`` comes in as an argument, drawn by the caller from a JAX key.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from datasets.features import FIRST_KNOWN, UNKNOWN
from models_common.config import GAP_SCALE, N_TYPES, PRICE_SCALE

Batch = dict[str, jax.Array]
TOKEN_FIELDS = (
    ("type_logits", "event_type"),
    ("item_logits", "item"),
    ("gap_logits", "gap_bucket"),
)


def forecast_targets(batch: Batch) -> jax.Array:
    """(B, T, 11) per-event feature vector (see models_common.config.FORECAST_DIM)."""
    types = jax.nn.one_hot(jnp.clip(batch["event_type"] - FIRST_KNOWN, 0), N_TYPES)
    has_price = (batch["price_bucket"] != UNKNOWN).astype(jnp.float32)[..., None]
    return jnp.concatenate(
        [
            types,
            batch["log_gap"][..., None] / GAP_SCALE,
            batch["log_price"][..., None] / PRICE_SCALE,
            has_price,
        ],
        axis=-1,
    )


def _next_mask(batch: Batch) -> jax.Array:
    return batch["mask"].at[:, 0].set(False)


def _shift(x: jax.Array) -> jax.Array:
    return jnp.concatenate([jnp.zeros_like(x[:, :1]), x[:, :-1]], axis=1)


def _token_nll(out: dict, batch: Batch, shifted: bool) -> jax.Array:
    total = jnp.zeros(batch["mask"].shape, jnp.float32)
    for head, target in TOKEN_FIELDS:
        logits = _shift(out[head]) if shifted else out[head]
        total = total + optax.softmax_cross_entropy_with_integer_labels(
            logits.astype(jnp.float32), batch[target]
        )
    return total


def _mean_over(values: jax.Array, where: jax.Array) -> jax.Array:
    weights = where.astype(values.dtype)
    return (values * weights).sum(axis=1) / jnp.maximum(weights.sum(axis=1), 1.0)


def _masked_nll(model, batch: Batch, mask_prob: float) -> jax.Array:
    """Each event masked exactly once, in ``round(1 / mask_prob)`` deterministic passes (a
    ``lax.scan`` over the passes: the model is compiled once, not once per pass)."""
    passes = max(2, round(1.0 / mask_prob))
    position = jnp.arange(batch["mask"].shape[1])

    def one_pass(total: jax.Array, j: jax.Array) -> tuple[jax.Array, None]:
        hide = batch["mask"] & (position % passes == j)[None, :]
        return total + _token_nll(model(batch, hide), batch, shifted=False) * hide, None

    total, _ = jax.lax.scan(
        one_pass, jnp.zeros(batch["mask"].shape, jnp.float32), jnp.arange(passes)
    )
    return total


def not_normal_log_odds(class_logits: jax.Array) -> jax.Array:
    """log(P(any anomaly type) / P(normal)) (see torch_objectives.not_normal_log_odds)."""
    return jax.nn.logsumexp(class_logits[:, 1:], axis=-1) - class_logits[:, 0]


def _pool_over(values: jax.Array, where: jax.Array, pool: str) -> jax.Array:
    """(B,) the mean or the maximum of each row's ``values`` where ``where`` (0 if nowhere)."""
    if pool == "mean":
        return _mean_over(values, where)
    return jnp.where(where, values, 0.0).max(axis=1)  # the scores are >= 0


def sequence_scores(
    model, batch: Batch, objective: str, mask_prob: float, top_k: int, pool: str = "mean"
) -> tuple[jax.Array, jax.Array | None, dict[str, jax.Array]]:
    """Sequence scores (B,), event scores (B, T) (None: the model does not localise) and
    alternative sequence scores by name (see torch_objectives)."""
    mask = batch["mask"]
    if objective == "classify_type":
        return not_normal_log_odds(model(batch)["class_logits"]), None, {}
    if objective == "classify":
        out = model(batch)
        events = out["event_logit"] * mask if "event_logit" in out else None
        return out["sequence_logit"], events, {}
    if objective == "next_event":
        out = model(batch)
        scored = _next_mask(batch)
        events = _token_nll(out, batch, shifted=True) * scored
        k = min(top_k, out["item_logits"].shape[-1])
        _, top = jax.lax.top_k(_shift(out["item_logits"]), k)
        miss = (top != batch["item"][..., None]).all(axis=-1)
        alt = {"top_k_miss_rate": _mean_over(miss.astype(jnp.float32), scored)}
        return _pool_over(events, scored, pool), events, alt
    if objective == "forecast":
        error = jnp.linalg.norm(_shift(model(batch)["forecast"]) - forecast_targets(batch), axis=-1)
        events = error * _next_mask(batch)
        return _pool_over(events, _next_mask(batch), pool), events, {}
    events = _masked_nll(model, batch, mask_prob)
    return _pool_over(events, mask, pool), events, {}


def _weighted_mean(values: jax.Array, weights: jax.Array) -> jax.Array:
    weights = weights.astype(jnp.float32)
    return (values * weights).sum() / jnp.maximum(weights.sum(), 1.0)


def loss(
    model, batch: Batch, objective: str, hide: jax.Array | None = None, stats: dict | None = None
) -> jax.Array:
    """The training loss of one batch (a scalar); ``hide`` is required for ``masked``. For
    the classifiers, ``stats["hits"]`` (if given) receives the number of real rows
    classified right."""
    rows = batch.get("row_valid", jnp.ones(batch["mask"].shape[0], bool))
    mask = batch["mask"] & rows[:, None]
    if objective == "classify_type":
        logits = model(batch)["class_logits"].astype(jnp.float32)
        if stats is not None:
            stats["hits"] = ((logits.argmax(-1) == batch["anomaly_class"]) & rows).sum()
        ce = optax.softmax_cross_entropy_with_integer_labels(logits, batch["anomaly_class"])
        return _weighted_mean(ce, rows)
    if objective == "classify":
        out = model(batch)
        if stats is not None:
            right = (out["sequence_logit"] > 0) == (batch["label"] > 0.5)
            stats["hits"] = (right & rows).sum()
        seq = optax.sigmoid_binary_cross_entropy(out["sequence_logit"], batch["label"])
        if "event_logit" not in out:
            return _weighted_mean(seq, rows)
        event = optax.sigmoid_binary_cross_entropy(out["event_logit"], batch["event_label"])
        return _weighted_mean(seq, rows) + _weighted_mean(event, mask)
    if objective == "next_event":
        nll = _token_nll(model(batch), batch, shifted=True)
        return _weighted_mean(nll, _next_mask(batch) & rows[:, None])
    if objective == "forecast":
        error = ((_shift(model(batch)["forecast"]) - forecast_targets(batch)) ** 2).sum(-1)
        return _weighted_mean(error, _next_mask(batch) & rows[:, None])
    if hide is None:
        raise ValueError("the masked objective's loss needs the mask `hide`")
    nll = _token_nll(model(batch, hide), batch, shifted=False)
    return _weighted_mean(nll, hide & mask)


def online_step(
    model,
    batch: Batch,
    state: jax.Array,
    carried: tuple,
    first: jax.Array,
    objective: str,
    pool: str = "mean",
) -> tuple[jax.Array, tuple]:
    """The twin of ``torch_objectives.online_step``."""
    summary, total, count = carried
    ones = jnp.ones((first.shape[0], 1), bool)
    if objective in ("classify", "classify_type"):
        summary = jnp.where(first[:, None], state, jnp.maximum(summary, state))
        out = model.heads(summary[:, None], state, ones)
        if objective == "classify":
            return out["sequence_logit"], (summary, total, count)
        return not_normal_log_odds(out["class_logits"]), (summary, total, count)
    before = model.heads(summary[:, None], summary, ones)  # predictions made at t - 1
    if objective == "next_event":
        value = _token_nll(before, batch, shifted=False)[:, 0]
    else:
        value = jnp.linalg.norm(before["forecast"] - forecast_targets(batch), axis=-1)[:, 0]
    count = jnp.where(first, 0.0, count + 1.0)
    if pool == "max":
        total = jnp.where(first, 0.0, jnp.maximum(total, value))
        return total, (state, total, count)
    total = jnp.where(first, 0.0, total + value)
    return total / jnp.maximum(count, 1.0), (state, total, count)
