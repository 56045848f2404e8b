"""What each source article specifies of its setup, and the same facts read from a composed
config. ``reproduction_deviations`` compares the two: every fact where a ``paper_*`` setup
differs from its article must be listed, with its reason, under ``reproduction.deviations`` of
the experiment's config (the test suite checks every setup at ``scale=paper``, the article's
sizes, for each deep detector it sweeps).

A fact the article leaves open is not in its spec (the config states the choice made under
``reproduction.open_choices``). The specs are transcribed from the articles; they hold no
measured numbers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from benchmark.config import Config


@dataclass(frozen=True)
class Some:
    """A value the article implies without giving it, e.g. "with dropout": any positive."""

    what: str

    def __eq__(self, value: object) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0

    def __hash__(self) -> int:
        return hash(self.what)

    def __repr__(self) -> str:
        return self.what


# The loss each objective trains with (the classifier adds an event-level term when the model
# has an event head: that is the ``event_head`` fact).
LOSS: dict[str, str] = {
    "classify": "binary cross-entropy",
    "classify_type": "softmax cross-entropy",
    "forecast": "mean squared error",  # squared norm over the feature vector, mean over events
    "next_event": "negative log-likelihood of the next event",
    "masked": "negative log-likelihood of masked events",
}
SIGMOID_HALF = "0.5 on the sigmoid output"

ARTICLES: dict[int, dict[str, dict[str, Any]]] = {
    1: {
        "*": {
            "objective": "classify",
            "loss": LOSS["classify"],
            "head": "pooled",
            "event_head": False,
            "max_length": 3,  # windows of 3 events
            "optimizer": "Adam",
            "epochs": 10,
            "batch_size": 32,
            "threshold": SIGMOID_HALF,
        },
        "transformer": {
            # two-class cross-entropy on a softmax = binary cross-entropy on the logit gap
            "embedding": 512,
            "hidden": 512,
            "feed_forward": 2048,
            "layers": 2,
            "items": 10000,
            "dropout": Some("with dropout (no rate given)"),
        },
        "lstm": {
            "embedding": 100,
            "hidden": 128,
            "layers": 2,
            "loss": "mean squared error",
            "dropout": 0.0,
        },
        "gru": {
            "embedding": 100,
            "hidden": 128,
            "layers": 2,
            "loss": "mean squared error",
            "dropout": 0.0,
        },
    },
    2: {
        "*": {
            "model": "lstm",
            "objective": "classify",
            "hidden": 50,
            "layers": 1,
            "head": "pooled",
            "event_head": False,
            "loss": LOSS["classify"],
            "dropout": 0.0,
            "output_dropout": "0.2 after the sigmoid output",
            "optimizer": "Adam",
            "lr": 1e-3,
            "epochs": 100,
            "batch_size": 1,
            "threshold": SIGMOID_HALF,
            "anomaly": "price outliers: increases only, against the user's usual amount",
        },
    },
    3: {
        "*": {
            "model": "lstm",
            "objective": "forecast",
            "loss": LOSS["forecast"],
            "input": "lag window",
            "score": "forecast error norm",
            "threshold_on": "each time point",
            "threshold": "balanced on validation",
            "optimizer": "Adam",
            "epochs": 10,
        },
    },
    4: {
        "*": {
            "model": "transformer",
            "objective": "classify",
            "layers": 3,
            "share_layers": True,
            "pretrained": True,
            "pca": True,
            "head": "pooled",
            "event_head": False,
            "optimizer": "AdamW",
            "lr": 2e-5,
            "batch_size": 16,
            "epochs": 5,
            "max_length": 128,
        },
    },
    5: {
        "*": {
            "model": "multimodal",
            "objective": "classify_type",
            "loss": LOSS["classify_type"],
            "fusion": "early",
            "hidden": 512,
            "text_dim": 100,
            "image_dim": 512,
            "optimizer": "Adam",
            "epochs": 10,
            "batch_size": 32,
        },
    },
}


def article_spec(article: int, model: str) -> dict[str, Any]:
    """The facts article ``article`` gives for a setup of ``model``."""
    specs = ARTICLES[article]
    return {**specs.get("*", {}), **specs.get(model, {})}


def setup_facts(cfg: Config) -> dict[str, Any]:
    """The facts of a composed experiment config, in the specs' terms."""
    m, objective = cfg.model, cfg.objective.name.value
    return {
        "model": m.name.value,
        "objective": objective,
        "loss": LOSS[objective],
        "embedding": m.embed_dim,
        "hidden": m.hidden_dim,
        "feed_forward": m.ff_dim,
        "layers": m.num_layers,
        "share_layers": m.share_layers,
        "fusion": m.fusion.value,
        "text_dim": m.text_dim,
        "image_dim": getattr(getattr(cfg.dataset, "generator", None), "image_dim", None),
        "items": cfg.dataset.sequence.max_items,
        "max_length": cfg.dataset.sequence.max_length,
        "head": m.head.value,
        "event_head": m.event_head if objective == "classify" else False,
        "dropout": m.dropout,
        "output_dropout": (
            f"{m.head_dropout:g} before the output layer" if m.head_dropout > 0 else "none"
        ),
        "input": "lag window" if m.lag_window > 0 else "whole history",
        "score": "forecast error norm" if objective == "forecast" else f"{objective} score",
        "threshold_on": "each time point" if cfg.objective.pool == "max" else "the sequence",
        "threshold": _threshold(cfg),
        "optimizer": "AdamW" if cfg.train.weight_decay > 0 else "Adam",
        "lr": cfg.train.lr,
        "epochs": cfg.train.epochs,
        "batch_size": cfg.train.batch_size,
        "pretrained": cfg.train.pretrain_epochs > 0,
        "pca": cfg.pca.components > 0,
        "anomaly": _anomaly(cfg),
    }


def _threshold(cfg: Config) -> str:
    e = cfg.evaluation
    if e.threshold == "fixed" and e.fixed_threshold == 0 and cfg.objective.name.value == "classify":
        return SIGMOID_HALF
    return {
        "balanced": "balanced on validation",
        "max_f1": "best F1 on validation",
    }.get(str(e.threshold), str(e.threshold))


def _anomaly(cfg: Config) -> str:
    """The injected anomaly, described where a setup injects price outliers alone."""
    used = [name for name, weight in cfg.anomaly.mix.items() if weight > 0]
    if used != ["price_outlier"]:
        return "types: " + ", ".join(used)
    knobs = cfg.anomaly.params.get("price_outlier", {})
    up = "increases only" if knobs.get("p_up", 0.8) >= 1.0 else "increases and cuts"
    reference = knobs.get("reference", "item")
    against = "the user's usual amount" if reference == "user" else "the item's own price"
    return f"price outliers: {up}, against {against}"


def reproduction_deviations(cfg: Config) -> dict[str, tuple[Any, Any]]:
    """Fact -> (the article's value, the config's) where the config differs from its
    article; empty for a config that is not a reproduction."""
    meta: Mapping[str, Any] = cfg.reproduction or {}
    if "article" not in meta:
        return {}
    facts = setup_facts(cfg)
    spec = article_spec(int(meta["article"]), facts["model"])
    return {key: (want, facts[key]) for key, want in spec.items() if want != facts[key]}
