"""Framework-free pieces shared by :mod:`models_torch` and :mod:`models_jax` (configs, feature
layouts). Imports neither torch nor jax, and nothing of the harness."""
