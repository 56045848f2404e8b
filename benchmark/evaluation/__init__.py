"""Detection metrics and the statistics over runs (NumPy and SciPy only)."""
