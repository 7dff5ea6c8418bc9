"""Benchmarks of asgisup against the M/G/c ideal and its peers (see docs/benchmarks.md)."""
