"""Controlled anomaly injection into any event table in the common schema (NumPy only).

``inject`` (the stage), ``types`` (the nine built-in types), ``core`` (what a type is given and
the ``@injector`` decorator), ``profile`` (a user's normal behaviour). A type of the user's own:
a module that decorates its injector with ``benchmark.anomalies.core.injector`` (see
docs/anomaly-types.md), named in ``anomaly.plugins`` and weighted in ``anomaly.mix``.
"""
