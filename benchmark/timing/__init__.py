"""The timing protocol (throughput, latency, compile time, memory) and FLOP counts."""
