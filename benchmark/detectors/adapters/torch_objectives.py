"""Training losses and anomaly scores of the five objectives, for PyTorch models.

Every score is computed per event, then pooled over a sequence's scored events (their mean, or
with ``pool="max"`` their maximum: a sequence flagged when any of its events is); padding never
contributes. Next-event and forecast predictions for event t come from the state at t - 1, so
the first event of a sequence has no score (0) and is left out of the mean.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from datasets.features import FIRST_KNOWN, UNKNOWN
from models_common.config import GAP_SCALE, N_TYPES, PRICE_SCALE

Batch = dict[str, torch.Tensor]


def forecast_targets(batch: Batch) -> torch.Tensor:
    """(B, T, 11) per-event feature vector (see models_common.config.FORECAST_DIM)."""
    types = F.one_hot((batch["event_type"] - FIRST_KNOWN).clamp(min=0), N_TYPES).float()
    has_price = (batch["price_bucket"] != UNKNOWN).float()[..., None]
    return torch.cat(
        [
            types,
            batch["log_gap"][..., None] / GAP_SCALE,
            batch["log_price"][..., None] / PRICE_SCALE,
            has_price,
        ],
        dim=-1,
    )


def _next_mask(batch: Batch) -> torch.Tensor:
    """(B, T) events that have a predecessor: the ones next-step objectives score."""
    scored = batch["mask"].clone()
    scored[:, 0] = False
    return scored


def _shift(x: torch.Tensor) -> torch.Tensor:
    """Predictions made at t - 1 aligned with event t (position 0 gets zeros)."""
    return torch.cat([torch.zeros_like(x[:, :1]), x[:, :-1]], dim=1)


TOKEN_FIELDS = (
    ("type_logits", "event_type"),
    ("item_logits", "item"),
    ("gap_logits", "gap_bucket"),
)


def _token_nll(out: dict, batch: Batch, shifted: bool) -> torch.Tensor:
    """(B, T) negative log-likelihood of each event: its type, item and time-gap bucket."""
    total = torch.zeros(batch["mask"].shape, device=batch["mask"].device)
    for head, target in TOKEN_FIELDS:
        logits = _shift(out[head]) if shifted else out[head]
        total = total + F.cross_entropy(
            logits.transpose(1, 2).float(), batch[target], reduction="none"
        )
    return total


def _mean_over(values: torch.Tensor, where: torch.Tensor) -> torch.Tensor:
    weights = where.to(values.dtype)
    return (values * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)


def _pool_over(values: torch.Tensor, where: torch.Tensor, pool: str) -> torch.Tensor:
    """(B,) the mean or the maximum of each row's ``values`` where ``where`` (0 if nowhere)."""
    if pool == "mean":
        return _mean_over(values, where)
    return torch.where(where, values, 0.0).amax(dim=1)  # the scores are >= 0


def not_normal_log_odds(class_logits: torch.Tensor) -> torch.Tensor:
    """log(P(any anomaly type) / P(normal)) from (B, 1 + types) logits: a monotone map of
    1 - p(normal) that keeps its resolution where the softmax saturates."""
    return torch.logsumexp(class_logits[:, 1:], dim=-1) - class_logits[:, 0]


def event_scores(model, batch: Batch, objective: str, mask_prob: float) -> torch.Tensor:
    """(B, T) per-event anomaly scores (0 where nothing is scored) of the objectives that
    score events (next_event, forecast, masked)."""
    if objective == "next_event":
        return _token_nll(model(batch), batch, shifted=True) * _next_mask(batch)
    if objective == "forecast":
        error = (_shift(model(batch)["forecast"]) - forecast_targets(batch)).norm(dim=-1)
        return error * _next_mask(batch)
    return _masked_nll(model, batch, mask_prob)


def _masked_nll(model, batch: Batch, mask_prob: float) -> torch.Tensor:
    """Each event masked exactly once, in ``round(1 / mask_prob)`` deterministic passes."""
    passes = max(2, round(1.0 / mask_prob))
    position = torch.arange(batch["mask"].shape[1], device=batch["mask"].device)
    total = torch.zeros(batch["mask"].shape, device=batch["mask"].device)
    for j in range(passes):
        hide = batch["mask"] & (position % passes == j)[None, :]
        total = total + _token_nll(model(batch, hide), batch, shifted=False) * hide
    return total


def sequence_scores(
    model, batch: Batch, objective: str, mask_prob: float, top_k: int, pool: str = "mean"
) -> tuple[torch.Tensor, torch.Tensor | None, dict[str, torch.Tensor]]:
    """Sequence scores (B,), event scores (B, T) (None: the model does not localise) and
    alternative sequence scores by name."""
    if objective == "classify_type":
        return not_normal_log_odds(model(batch)["class_logits"]), None, {}
    if objective == "classify":
        out = model(batch)
        events = out["event_logit"] * batch["mask"] if "event_logit" in out else None
        return out["sequence_logit"], events, {}
    if objective == "next_event":
        out = model(batch)
        events = _token_nll(out, batch, shifted=True) * _next_mask(batch)
        top = _shift(out["item_logits"]).topk(min(top_k, out["item_logits"].shape[-1]), -1)
        miss = (top.indices != batch["item"][..., None]).all(dim=-1)
        alt = {"top_k_miss_rate": _mean_over(miss.float(), _next_mask(batch))}
        return _pool_over(events, _next_mask(batch), pool), events, alt
    events = event_scores(model, batch, objective, mask_prob)
    where = batch["mask"] if objective == "masked" else _next_mask(batch)
    return _pool_over(events, where, pool), events, {}


def loss(
    model,
    batch: Batch,
    objective: str,
    mask_prob: float,
    generator: torch.Generator | None = None,
    hide: torch.Tensor | None = None,
    stats: dict | None = None,
) -> torch.Tensor:
    """The training loss of one batch (a scalar). The masked objective hides a random
    ``mask_prob`` share of events drawn from ``generator``, or exactly ``hide`` if given.
    For the classifiers, ``stats["hits"]`` (if ``stats`` is given) receives the number of
    sequences classified right (a device tensor: no host sync)."""
    mask = batch["mask"]
    if objective == "classify_type":
        logits = model(batch)["class_logits"]
        if stats is not None:
            stats["hits"] = (logits.argmax(-1) == batch["anomaly_class"]).sum()
        return F.cross_entropy(logits.float(), batch["anomaly_class"])
    if objective == "classify":
        out = model(batch)
        if stats is not None:
            stats["hits"] = ((out["sequence_logit"] > 0) == (batch["label"] > 0.5)).sum()
        seq = F.binary_cross_entropy_with_logits(out["sequence_logit"], batch["label"])
        if "event_logit" not in out:
            return seq
        event = F.binary_cross_entropy_with_logits(
            out["event_logit"], batch["event_label"], reduction="none"
        )
        return seq + (event * mask).sum() / mask.sum().clamp(min=1)
    if objective == "next_event":
        scored = _next_mask(batch)
        nll = _token_nll(model(batch), batch, shifted=True)
        return (nll * scored).sum() / scored.sum().clamp(min=1)
    if objective == "forecast":
        scored = _next_mask(batch)
        error = (_shift(model(batch)["forecast"]) - forecast_targets(batch)).pow(2).sum(-1)
        return (error * scored).sum() / scored.sum().clamp(min=1)
    if hide is None:
        draw = torch.rand(mask.shape, generator=generator, device="cpu").to(mask.device)
        hide = mask & (draw < mask_prob)
    nll = _token_nll(model(batch, hide), batch, shifted=False)
    return (nll * hide).sum() / hide.sum().clamp(min=1)


def online_step(
    model,
    batch: Batch,
    state: torch.Tensor,
    carried: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    first: torch.Tensor,
    objective: str,
    pool: str = "mean",
) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """A recurrent detector's online score after one more event per sequence: ``batch``
    (B, 1), ``state`` (B, H) the top layer's state after it, ``first`` (B,) whether it opens
    its sequence. ``carried`` is (summary (B, H), total (B,), count (B,)): the classifiers'
    running maximum of the states, or the previous state and the running sum and count of
    the per-event scores, whose mean is the score (as ``sequence_scores`` on the prefix); with
    ``pool="max"`` the running maximum instead of the sum."""
    summary, total, count = carried
    ones = torch.ones_like(first)[:, None]
    if objective in ("classify", "classify_type"):
        summary = torch.where(first[:, None], state, torch.maximum(summary, state))
        out = model.heads(summary[:, None], state, ones)
        if objective == "classify":
            return out["sequence_logit"], (summary, total, count)
        return not_normal_log_odds(out["class_logits"]), (summary, total, count)
    before = model.heads(summary[:, None], summary, ones)  # predictions made at t - 1
    if objective == "next_event":
        value = _token_nll(before, batch, shifted=False)[:, 0]
    else:
        value = (before["forecast"] - forecast_targets(batch)).norm(dim=-1)[:, 0]
    count = torch.where(first, torch.zeros_like(count), count + 1)
    if pool == "max":
        total = torch.where(first, torch.zeros_like(total), torch.maximum(total, value))
        return total, (state, total, count)
    total = torch.where(first, torch.zeros_like(total), total + value)
    return total / count.clamp(min=1.0), (state, total, count)
