"""Benchmarks: renewal storms, API latency, the cost of a subscription (not run by `make test`)."""
