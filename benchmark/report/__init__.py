"""Reports read run records, never models: the selection report, its tables and plots,
the reproduction table and the PyTorch-vs-JAX comparison."""
