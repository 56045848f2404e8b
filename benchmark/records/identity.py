"""Content-addressed run identity: the same config always gets the same run id."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any


def canonical(config: Mapping[str, Any], noise_keys: tuple[str, ...]) -> str:
    """Stable JSON of ``config`` with top-level ``noise_keys`` removed and keys sorted."""
    kept = {k: v for k, v in config.items() if k not in noise_keys}
    return json.dumps(kept, sort_keys=True, separators=(",", ":"), default=str)


# Keys that do not change what a run computes: left out of the run id.
NOISE_KEYS: tuple[str, ...] = (
    "logger",
    "results_dir",
    "experiment_name",
    "hydra",
    "resume",
    "dry_run",
    "scale",  # its effect is in the values it selects, which stay in the id
    "reproduction",
    "threads",  # like the hardware: recorded, not part of what the run is
)
BASELINE_FRAMEWORK = "numpy"


def ignored_sections(framework: str) -> tuple[str, ...]:
    """Config sections a detector ignores, left out of its identity: a baseline (framework
    ``numpy``) is the same run whichever framework or objective the sweep around it names."""
    return ("framework", "objective") if framework == BASELINE_FRAMEWORK else ()


def identity_config(config: Mapping[str, Any], framework: str) -> Mapping[str, Any]:
    """What of ``config`` decides a run of a ``framework`` detector: a baseline reads neither
    the sections ``ignored_sections`` names nor any of the deep detectors' layer settings (its
    model's name alone), so a sweep that varies those runs each baseline once."""
    if framework != BASELINE_FRAMEWORK:
        return config
    ignored = ignored_sections(framework)
    kept = {k: v for k, v in config.items() if k not in ignored}
    model = config.get("model")
    if isinstance(model, Mapping):
        kept["model"] = {"name": model.get("name")}
    return kept


def replicate_key(config: Mapping[str, Any], framework: str, length: int = 10) -> str:
    """The hash of a run's config without its seed (and noise keys, and what its detector, of
    ``framework``, ignores): runs with equal keys differ in the seed alone, so they are
    replicates of one configuration and only they may be pooled over seeds."""
    return run_id(identity_config(config, framework), (*NOISE_KEYS, "seed"), length)


def run_id(config: Mapping[str, Any], noise_keys: tuple[str, ...], length: int = 10) -> str:
    """Short SHA-1 of the canonical config (noise keys such as logging excluded)."""
    digest = hashlib.sha1(canonical(config, noise_keys).encode("utf-8")).hexdigest()
    return digest[:length]
