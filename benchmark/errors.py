"""Errors a user can cause and fix: shown as one line, never as a traceback."""

from __future__ import annotations


class UserError(Exception):
    """A problem with the user's config, data or environment; the message names the fix."""


class ConfigError(UserError):
    """A config value out of range or not among the allowed choices."""


def user_error_types() -> tuple[type[BaseException], ...]:
    """Every exception class that means "the user can fix this" (not a bug in the harness)."""
    from benchmark.anomalies.core import InjectionError
    from datasets.schema import SchemaError
    from datasets.synthetic import SyntheticConfigError

    return (UserError, InjectionError, SchemaError, SyntheticConfigError)
