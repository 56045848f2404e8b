"""Blocks shared by the PyTorch detectors: event embedding, attention block, objective heads.

Batches are dicts of tensors named as in ``datasets.features.SequenceArrays``: ``event_type``,
``item``, ``category``, ``gap_bucket``, ``price_bucket`` (B, T) int64, ``mask`` (B, T) bool;
optional ``profile`` (B, F), ``brand`` (B, T) and ``log_price`` (B, T).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models_common.config import (
    DROP_BITS,
    FORECAST_DIM,
    DetectorConfig,
    Head,
    kept_decisions,
)

LN_EPS = 1e-5  # set explicitly: Flax's LayerNorm defaults to 1e-6


class _CpuLookup(torch.autograd.Function):
    """A lookup in a table whose row 0 is padding, with its gradient as one ``index_add_``."""

    @staticmethod
    def forward(ctx, table: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(ids)
        ctx.rows = table.shape[0]
        return F.embedding(ids, table, padding_idx=0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (ids,) = ctx.saved_tensors
        table_grad = grad.new_zeros(ctx.rows, grad.shape[-1])
        table_grad.index_add_(0, ids.reshape(-1), grad.reshape(-1, grad.shape[-1]))
        table_grad[0] = 0.0  # padding_idx: the padding row learns nothing
        return table_grad, None


class Embedding(nn.Embedding):
    """``nn.Embedding(padding_idx=0)`` whose CPU gradient is one ``index_add_``: PyTorch's own
    CPU backward sorts the ids first, and the six lookups of a detector batch took 1.5x as long
    forward and backward (4.1 against 2.7 ms at batch 128 x 50 events, same gradients). Other
    devices, and calls without gradients, use PyTorch's own."""

    def __init__(self, num: int, dim: int) -> None:
        super().__init__(num, dim, padding_idx=0)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        if self.weight.device.type != "cpu" or not torch.is_grad_enabled():
            return super().forward(ids)
        return _CpuLookup.apply(self.weight, ids)


INT64_MIN = -(2**63)


def keep_mask(shape: torch.Size, rate: float) -> tuple[torch.Tensor, float]:
    """(bool mask, share kept) of dropout at ``rate``: one 16-bit decision per element, four
    from each 64-bit draw of PyTorch's generator, the rate rounded by ``kept_decisions``."""
    n = shape.numel()
    words = torch.empty((n + 3) // 4, dtype=torch.int64).random_(INT64_MIN, None)
    draws = words.view(torch.int16)[:n].view(shape)  # uniform over [-2^15, 2^15)
    kept = kept_decisions(rate)
    return draws >= 2 ** (DROP_BITS - 1) - kept, kept / 2**DROP_BITS


class Dropout(nn.Dropout):
    """``nn.Dropout`` whose CPU training masks come from ``keep_mask`` when ``fast`` is set:
    PyTorch's CPU ``bernoulli_`` took 3.3 ms for a (128, 50, 64) mask on this project's
    reference machine, the 16-bit decisions plus the rescale 1.1 ms. Same distribution (the
    rate rounded to 2^-16), other draws. On a GPU, and with ``fast`` off, PyTorch's own."""

    def __init__(self, p: float, fast: bool = True) -> None:
        super().__init__(p)
        self.fast = fast

    def drops_here(self, x: torch.Tensor) -> bool:
        """Whether this call draws its masks from ``keep_mask``."""
        return self.fast and self.training and self.p > 0 and x.device.type == "cpu"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.drops_here(x):
            return super().forward(x)
        keep, share = keep_mask(x.shape, self.p)
        if share == 0.0:
            return torch.zeros_like(x)
        return torch.where(keep, x * (1.0 / share), 0.0)


def use_fast_dropout(model: nn.Module, fast: bool) -> nn.Module:
    """Switch every ``Dropout`` of ``model`` to ``keep_mask`` masks on CPU (or back)."""
    for module in model.modules():
        if isinstance(module, Dropout):
            module.fast = fast
    return model


class EventEmbedding(nn.Module):
    """Sum of the six per-event field embeddings (type, item, category, gap, price, device);
    masked-out positions (the masked objective) take a learned mask vector instead."""

    def __init__(self, cfg: DetectorConfig) -> None:
        super().__init__()
        d = cfg.embed_dim
        self.event_type = Embedding(cfg.n_event_types, d)
        self.item = Embedding(cfg.n_items, d)
        self.category = Embedding(cfg.n_categories, d)
        self.gap = Embedding(cfg.n_gap_buckets, d)
        self.price = Embedding(cfg.n_price_buckets, d)
        self.device_code = Embedding(cfg.n_devices, d)
        self.mask_vector = nn.Parameter(torch.zeros(d))
        self.dropout = Dropout(cfg.dropout)

    def forward(
        self, batch: dict[str, torch.Tensor], hide: torch.Tensor | None = None
    ) -> torch.Tensor:
        # Summed in place into the first lookup: five fewer (B, T, d) temporaries per call.
        x = self.event_type(batch["event_type"])  # (B, T, d)
        x += self.item(batch["item"])
        x += self.category(batch["category"])
        x += self.gap(batch["gap_bucket"])
        x += self.price(batch["price_bucket"])
        x += self.device_code(batch["device"])
        if hide is not None:
            x = torch.where(hide[..., None], self.mask_vector.expand_as(x), x)
        return self.dropout(x)


def attention_mask(mask: torch.Tensor, causal: bool) -> torch.Tensor:
    """(B, 1, T, T) boolean mask for scaled_dot_product_attention: True = may attend."""
    allowed = mask[:, None, None, :]  # keys that are real events
    if causal:
        t = mask.shape[1]
        tril = torch.ones(t, t, dtype=torch.bool, device=mask.device).tril()
        allowed = allowed & tril
    return allowed


def attention_weights(q: torch.Tensor, k: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """softmax(q k^T / sqrt(d)) over the allowed keys, as scaled_dot_product_attention's own
    math; a query with no allowed key (an empty sequence) averages all keys instead of NaN."""
    scores = (q @ k.transpose(-2, -1)) * q.shape[-1] ** -0.5
    return scores.masked_fill(~allowed, torch.finfo(scores.dtype).min).softmax(dim=-1)


class AttentionBlock(nn.Module):
    """Pre-norm transformer block: x + MHA(LN(x)), then x + FF(LN(x))."""

    def __init__(self, width: int, heads: int, ff_dim: int, dropout: float) -> None:
        super().__init__()
        if width % heads:
            raise ValueError(f"hidden_dim {width} must be divisible by num_heads {heads}")
        self.heads = heads
        self.norm1 = nn.LayerNorm(width, eps=LN_EPS)
        self.qkv = nn.Linear(width, 3 * width)
        self.out = nn.Linear(width, width)
        self.norm2 = nn.LayerNorm(width, eps=LN_EPS)
        self.ff1 = nn.Linear(width, ff_dim)
        self.ff2 = nn.Linear(ff_dim, width)
        self.dropout = Dropout(dropout)
        self.attention_dropout = Dropout(dropout)

    def forward(self, x: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        b, t, w = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(b, t, 3, self.heads, w // self.heads).unbind(2)
        q, k, v = (z.transpose(1, 2) for z in (q, k, v))  # (B, heads, T, hs)
        if self.attention_dropout.drops_here(x):
            y = self.attention_dropout(attention_weights(q, k, allowed)) @ v
        else:
            p = self.attention_dropout.p if self.training else 0.0
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, dropout_p=p)
        x = x + self.dropout(self.out(y.transpose(1, 2).reshape(b, t, w)))
        return x + self.dropout(self.ff2(F.gelu(self.ff1(self.norm2(x)))))


def last_valid(states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, H) state at each sequence's last real event."""
    index = (mask.sum(dim=1) - 1).clamp(min=0)
    return states[torch.arange(states.shape[0], device=states.device), index]


def masked_mean(states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    weights = mask.to(states.dtype)[..., None]
    return (states * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)


def masked_max(states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, H) element-wise maximum over real events."""
    return torch.where(mask[..., None], states, float("-inf")).amax(dim=1)  # one pass


class Heads(nn.Module):
    """The objective's output layers on top of per-event states (B, T, H) and a pooled (B, H).

    The sequence classifiers (binary, or softmax over "normal" and the anomaly types) read the
    summary ``cfg.head`` names (see ``models_common.config.Head``), through ``head_dropout``."""

    def __init__(self, cfg: DetectorConfig, width: int) -> None:
        super().__init__()
        self.objective = cfg.objective
        self.head = cfg.head
        summary = 2 * width if cfg.head == Head.pooled_max else width
        self.summary_dropout = Dropout(cfg.head_dropout) if cfg.head_dropout > 0 else None
        if cfg.objective == "classify":
            self.sequence = nn.Linear(summary, 1)
            self.event = nn.Linear(width, 1) if cfg.event_head else None
        elif cfg.objective == "classify_type":
            self.classes = nn.Linear(summary, cfg.n_classes)
        elif cfg.objective in ("next_event", "masked"):
            self.type_logits = nn.Linear(width, cfg.n_event_types)
            self.item_logits = nn.Linear(width, cfg.n_items)
            self.gap_logits = nn.Linear(width, cfg.n_gap_buckets)
        elif cfg.objective == "forecast":
            self.forecast = nn.Linear(width, FORECAST_DIM)
        else:
            raise ValueError(f"unknown objective {cfg.objective!r}")

    def forward(
        self, states: torch.Tensor, pooled: torch.Tensor, mask: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        # Output layers in float32 even under bf16 autocast: bf16 logits keep about three
        # significant digits, which ties the scores of similar sequences and costs ROC-AUC.
        with torch.autocast(states.device.type, enabled=False):
            return self._outputs(states.float(), pooled.float(), mask)

    def summary(
        self, states: torch.Tensor, pooled: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        """What a sequence classifier's output layer reads (B, summary width)."""
        if self.head == Head.pooled_max:
            pooled = torch.cat([pooled, masked_max(states, mask)], dim=-1)
        return pooled if self.summary_dropout is None else self.summary_dropout(pooled)

    def _outputs(
        self, states: torch.Tensor, pooled: torch.Tensor, mask: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        if self.objective == "classify":
            out = {"sequence_logit": self.sequence(self.summary(states, pooled, mask))[:, 0]}
            if self.event is not None:
                out["event_logit"] = self.event(states)[..., 0]
            return out
        if self.objective == "classify_type":
            return {"class_logits": self.classes(self.summary(states, pooled, mask))}
        if self.objective in ("next_event", "masked"):
            return {
                "type_logits": self.type_logits(states),
                "item_logits": self.item_logits(states),
                "gap_logits": self.gap_logits(states),
            }
        return {"forecast": self.forecast(states)}


def init_weights(module: nn.Module) -> None:
    """Small normal init for embeddings and linears (biases zero), as in GPT-2."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=0.02)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, std=0.02)
            with torch.no_grad():
                m.weight[0].zero_()
