"""Controlled anomaly injection into any event table in the common schema (NumPy only).

A type of the user's own: a module that decorates its injector with :func:`injector` (see
docs/anomaly-types.md), named in ``anomaly.plugins`` and weighted in ``anomaly.mix``.
"""

from benchmark.anomalies.core import (
    Context,
    InjectionError,
    LabelledEvents,
    Session,
    any_per_session,
    injector,
)
from benchmark.anomalies.inject import (
    ANOMALY_TYPES,
    AnomalyConfig,
    check_anomaly_config,
    describe_types,
    inject,
    supported_mix,
    type_names,
    without_holdout,
)

__all__ = [
    "ANOMALY_TYPES",
    "AnomalyConfig",
    "Context",
    "InjectionError",
    "LabelledEvents",
    "Session",
    "any_per_session",
    "check_anomaly_config",
    "describe_types",
    "inject",
    "injector",
    "supported_mix",
    "type_names",
    "without_holdout",
]
