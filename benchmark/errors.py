"""Errors a user can cause and fix: shown as one line, never as a traceback."""

from __future__ import annotations


class UserError(Exception):
    """A problem with the user's config, data or environment; the message names the fix."""


class ConfigError(UserError):
    """A config value out of range or not among the allowed choices."""


class EvaluationError(UserError):
    """The data cannot be evaluated (too few anomalous or normal sequences in a split)."""


class ResultsWriteError(UserError):
    """The results directory cannot be created or written (permissions, disk full)."""


class TrainingDivergedError(UserError, FloatingPointError):
    """The loss became NaN or infinite: a learning rate too high for the data and model."""

    def __init__(self, what: str) -> None:
        super().__init__(
            f"{what} (training diverged): lower train.lr, raise train.warmup or keep "
            "train.grad_clip > 0"
        )


def user_error_types() -> tuple[type[BaseException], ...]:
    """Every exception class that means "the user can fix this" (not a bug in the harness)."""
    from benchmark.anomalies.core import InjectionError
    from datasets.schema import SchemaError
    from datasets.synthetic import SyntheticConfigError

    return (UserError, InjectionError, SchemaError, SyntheticConfigError)
