"""Loaders of the public clickstream datasets into the common schema (one module each).

Each ``load(path, options) -> Dataset`` streams the files a user downloaded (or the sample
shipped under ``datasets/samples/``), validates every row under the ``strict`` rule, and
reports what it read in ``Dataset.source``.
"""
