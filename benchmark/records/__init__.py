"""Run records on disk: identity, atomic strict-JSON writes, the results store, W&B tracking."""
