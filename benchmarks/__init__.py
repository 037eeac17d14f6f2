"""`make bench`: latency and throughput on this machine, written to BENCHMARKS.md."""
