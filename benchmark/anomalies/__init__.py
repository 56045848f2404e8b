"""Controlled anomaly injection into any event table in the common schema (NumPy only)."""

from benchmark.anomalies.core import InjectionError, LabelledEvents
from benchmark.anomalies.inject import (
    ANOMALY_TYPES,
    AnomalyConfig,
    check_anomaly_config,
    describe_types,
    inject,
    supported_mix,
)

__all__ = [
    "ANOMALY_TYPES",
    "AnomalyConfig",
    "InjectionError",
    "LabelledEvents",
    "check_anomaly_config",
    "describe_types",
    "inject",
    "supported_mix",
]
