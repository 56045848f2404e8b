"""Model FLOPs per sequence: the work a detector or plain reference does, counted the same way
for both frameworks, so that a throughput becomes an achieved TFLOP/s beside the device's
measured matrix-product ceiling.

The count is the usual "model FLOPs" convention (as in MFU accounting): the matrix products
and attention contractions of a forward pass, two FLOPs per multiply-add, over every position
of a sequence of length ``length`` (the speed job's sequences are full length). Gathers,
element-wise work, normalisation and softmax are left out: they cost memory traffic, not
matrix-unit time. A training step counts three forward passes (the backward pass does twice
the forward's products). Framework-neutral: NumPy-free arithmetic on the sizes.
"""

from __future__ import annotations

from dataclasses import dataclass

from models_common.config import FORECAST_DIM

TRAIN_STEP_FACTOR = 3  # forward + backward (twice the forward's matrix products)
GATES = {"lstm": 4, "gru": 3}


@dataclass(frozen=True)
class Sizes:
    """What the count depends on (``conf/model`` and the sequence length)."""

    model: str
    embed_dim: int
    hidden_dim: int
    num_layers: int
    ff_dim: int
    length: int
    objective: str = "classify"
    n_items: int = 10_000
    n_event_types: int = 10
    n_gap_buckets: int = 16
    n_classes: int = 10
    # The multimodal detector's other modalities (0 or False: the data has none).
    fusion: str = "early"
    items: bool = True  # brand and price
    text_dim: int = 0  # query-word embedding width
    query_words: int = 8  # words of a query the text encoder averages
    image_dim: int = 0  # item image feature width


def recurrent_layers(s: Sizes) -> float:
    """Stacked LSTM/GRU: per step, gates x H outputs over (input + H) inputs."""
    gates, h = GATES[s.model], s.hidden_dim
    inputs = [s.embed_dim] + [h] * (s.num_layers - 1)
    return sum(2.0 * s.length * gates * h * (n + h) for n in inputs)


def attention_block(width: int, ff_dim: int, length: int) -> float:
    """Q, K, V and output projections, scores and weighted values, the feed-forward pair."""
    projections = 2.0 * length * 4 * width * width
    contractions = 2.0 * 2 * length * length * width
    feed_forward = 2.0 * length * 2 * width * ff_dim
    return projections + contractions + feed_forward


def heads(s: Sizes, width: int) -> float:
    """The objective's output layers (models_*/layers.py ``Heads``)."""
    t = s.length
    if s.objective == "classify":
        return 2.0 * t * width + 2.0 * 2 * width
    if s.objective == "classify_type":
        return 2.0 * 2 * width * s.n_classes
    if s.objective in ("next_event", "masked"):
        return 2.0 * t * width * (s.n_event_types + s.n_items + s.n_gap_buckets)
    if s.objective == "forecast":
        return 2.0 * t * width * FORECAST_DIM
    raise ValueError(f"unknown objective {s.objective!r}")


def detector_forward(s: Sizes) -> float:
    """One sequence through a detector (``models_torch``/``models_jax``)."""
    w, t = s.hidden_dim, s.length
    if s.model in GATES:
        return recurrent_layers(s) + heads(s, w)
    encoder = 2.0 * t * s.embed_dim * w + s.num_layers * attention_block(w, s.ff_dim, t)
    if s.model == "transformer":
        return encoder + heads(s, w)
    if s.model == "multimodal":
        return encoder + modality_inputs(s) + fusion(s) + heads(s, w)
    raise ValueError(f"unknown model {s.model!r}")


def modality_inputs(s: Sizes) -> float:
    """Per event: the price projection (1 -> w), the query words' mean and its projection,
    the image projection."""
    w, t = s.hidden_dim, s.length
    text = s.query_words * s.text_dim + s.text_dim * w if s.text_dim else 0
    return 2.0 * t * ((w if s.items else 0) + text + s.image_dim * w)


def fusion(s: Sizes) -> float:
    """Early: the per-event gate over the five modalities and the gated sum, then the
    profile query, the states' keys and one single-query attention (scores and weighted
    values). Late: the query and keys, one attention per per-event modality, the five-way
    gate and the gated sum of the summaries."""
    w, t, n = s.hidden_dim, s.length, 5
    query = w * w + t * w * w
    if s.fusion == "early":
        return 2.0 * (t * (n * w * n + n * w) + query + 2 * t * w)
    streams = 1 + s.items + bool(s.text_dim) + bool(s.image_dim)
    keys = (streams - 1) * t * w * w
    return 2.0 * (query + keys + streams * 2 * t * w + n * w * n + n * w)


def reference_forward(s: Sizes) -> float:
    """One sequence through the plain reference (``models_*/reference.py``): the same
    recurrence or blocks, no projection, a pooled linear head."""
    w = s.hidden_dim
    if s.model in GATES:
        return recurrent_layers(s) + 2.0 * w
    return s.num_layers * attention_block(w, s.ff_dim, s.length) + 2.0 * w


def forward_flops(s: Sizes, implementation: str = "detector") -> float:
    """Model FLOPs of one sequence's forward pass (``implementation``: detector/reference)."""
    if implementation == "detector":
        return detector_forward(s)
    if implementation == "reference":
        return reference_forward(s)
    raise ValueError(f"unknown implementation {implementation!r}")


def achieved(seq_per_s: float | None, flops_per_seq: float) -> float | None:
    """FLOP/s achieved at a throughput (None when there is none)."""
    return None if not seq_per_s else seq_per_s * flops_per_seq
