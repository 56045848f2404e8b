"""Online detection: the test traffic replayed event by event, alarms as they would be raised,
time to detection (NumPy only: detectors reach it through a scoring function)."""
