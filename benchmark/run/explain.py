"""How a detector scored its top test sequences, for the report: each sequence's events with
the attention the summary paid them, and the weight each modality had (the multimodal
detector's attention and gates). Written beside the record as ``explanations.json`` (strict
JSON); a detector that shows nothing of its reasoning leaves no file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from benchmark.detectors.registry import NeuralDetector, Scores
from benchmark.records import strict_json
from benchmark.records.atomic import write_atomic
from benchmark.records.store import EXPLANATIONS_FILE
from benchmark.run.data import PreparedData
from datasets.features import FIRST_KNOWN, SequenceArrays
from datasets.schema import EventType
from models_common.config import MODALITIES

TOP_SEQUENCES = 10


def write_explanations(
    run_dir: Path, detector: NeuralDetector, prepared: PreparedData, test: Scores
) -> bool:
    """``explanations.json`` for the ``TOP_SEQUENCES`` highest-scored test sequences; False
    (nothing written) when the detector shows no attention."""
    found = explanations(detector, prepared, test)
    if found is None:
        return False
    write_atomic(run_dir / EXPLANATIONS_FILE, strict_json.dumps(found, indent=1))
    return True


def explanations(
    detector: NeuralDetector, prepared: PreparedData, test: Scores
) -> dict[str, Any] | None:
    arrays, labelled = prepared.arrays["test"], prepared.labelled["test"]
    top = np.argsort(-test.sequence, kind="stable")[:TOP_SEQUENCES]
    shown = detector.inspect(arrays, top)
    if "attention_weights" not in shown:
        return None
    names = labelled.type_names
    sequences = []
    for rank, i in enumerate(top):
        kind = int(labelled.anomaly_type[i])
        entry: dict[str, Any] = {
            "rank": rank + 1,
            "row": int(i),
            "session_id": int(arrays.session_id[i]),
            "score": float(test.sequence[i]),
            "anomalous": bool(arrays.label[i]),
            "type": names[kind] if arrays.label[i] and 0 <= kind < len(names) else None,
            "events": events_of(arrays, int(i), shown, rank),
        }
        if "gates" in shown:
            entry["modality_weights"] = weights_of(shown["gates"][rank])
        sequences.append(entry)
    return {"top": TOP_SEQUENCES, "modalities": list(MODALITIES), "sequences": sequences}


def events_of(
    arrays: SequenceArrays, i: int, shown: dict[str, np.ndarray], rank: int
) -> list[dict[str, Any]]:
    """Sequence ``i``'s events in order: what they were, whether injection changed them, and
    the attention (and, for early fusion, the modality weights) each received."""
    start, n = int(arrays.offsets[i]), int(arrays.length[i])
    rows = slice(start, start + n)
    columns = {name: column[rows] for name, column in arrays.events.items()}
    out = []
    for t in range(n):
        code = int(columns["event_type"][t]) - FIRST_KNOWN
        event: dict[str, Any] = {
            "position": t,
            "event_type": EventType(code).name.lower() if code >= 0 else "unknown",
            "item": int(columns["item"][t]),
            "category": int(columns["category"][t]),
            "seconds_since_previous": float(np.expm1(columns["log_gap"][t])),
            "price": float(np.expm1(columns["log_price"][t])),
            "searched": bool(columns["query"][t] > 0) if "query" in columns else False,
            "injected": bool(columns["event_label"][t]),
            "attention": float(shown["attention_weights"][rank, t]),
        }
        if "event_gates" in shown:
            event["modality_weights"] = weights_of(shown["event_gates"][rank, t])
        out.append(event)
    return out


def weights_of(gates: np.ndarray) -> dict[str, float]:
    """Modality name -> its gate (the model's gates come in ``MODALITIES`` order)."""
    return dict(zip(MODALITIES, map(float, gates), strict=True))
