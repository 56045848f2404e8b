"""One run end to end: compose and check the config, the data stage, the detector stage
and the run record on disk."""
