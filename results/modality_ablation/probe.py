"""Is each modality type's signal in the data? Two hand-made scores per test sequence, on the
modality ablation's data (seeds 0, 1, 2), and their ROC-AUC per anomaly type against the
normal sequences:

- image vs category: the lowest cosine, over the sequence's events, between the item's image
  features and the mean image of the event's category (category means from training);
- item vs category: the share of events whose item's most frequent training category is not
  the event's category.

    python results/modality_ablation/probe.py
"""

from __future__ import annotations

import sys
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benchmark.config import Config
from benchmark.evaluation.metrics import roc_auc
from benchmark.run.data import prepare_data
from datasets.features import SequenceArrays
from tests.conftest import compose_typed

TYPES = ("listing_mismatch", "interest_shift", "query_stuffing", "price_outlier")


def image_vs_category(train: SequenceArrays, test: SequenceArrays) -> np.ndarray:
    images = train.media.item_image  # type: ignore[union-attr]
    has = train.events["image"] > 0
    category = train.events["category"]
    n = int(max(category.max(), test.events["category"].max())) + 1
    sums = np.zeros((n, images.shape[1]))
    counts = np.zeros(n)
    np.add.at(sums, category[has], images[train.events["image"][has]])
    np.add.at(counts, category[has], 1)
    means = sums / np.maximum(counts, 1)[:, None]
    event_image = images[test.events["image"]]
    mean = means[test.events["category"]]
    norms = np.linalg.norm(event_image, axis=1) * np.linalg.norm(mean, axis=1) + 1e-9
    cosine = (event_image * mean).sum(1) / norms
    known = (test.events["image"] > 0) & (counts[test.events["category"]] > 0)
    return -np.minimum.reduceat(np.where(known, cosine, 1.0), test.offsets[:-1])


def item_vs_category(train: SequenceArrays, test: SequenceArrays) -> np.ndarray:
    seen: dict[int, Counter] = defaultdict(Counter)
    for item, category in zip(
        train.events["item"].tolist(), train.events["category"].tolist(), strict=True
    ):
        seen[item][category] += 1
    usual = {item: counts.most_common(1)[0][0] for item, counts in seen.items()}
    pairs = zip(test.events["item"].tolist(), test.events["category"].tolist(), strict=True)
    wrong = np.array([item > 1 and usual.get(item, c) != c for item, c in pairs], dtype=float)
    return np.add.reduceat(wrong, test.offsets[:-1]) / test.length


def main() -> None:
    config: Config = compose_typed(["experiment=modality_ablation"])
    found: dict[tuple[str, str], list[float]] = defaultdict(list)
    for seed in (0, 1, 2):
        prepared = prepare_data(config.dataset, config.anomaly, seed)
        train, test = prepared.arrays["train"], prepared.arrays["test"]
        labels = prepared.labelled["test"]
        scores = {
            "image vs category": image_vs_category(train, test),
            "item vs category": item_vs_category(train, test),
        }
        for t, name in enumerate(labels.type_names):
            if name not in TYPES:
                continue
            rows = (labels.anomaly_type == t) | ~test.label
            for probe, score in scores.items():
                found[(name, probe)].append(roc_auc(test.label[rows], score[rows]))
    print("| type | image vs category | item vs category |")
    print("| --- | --- | --- |")
    for name in TYPES:
        cells = [
            f"{np.mean(found[(name, p)]):.3f}" for p in ("image vs category", "item vs category")
        ]
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
