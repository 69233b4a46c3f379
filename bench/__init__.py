"""Benchmarks of dmrelay, not run in CI: bench.throughput and bench.ack_latency."""
