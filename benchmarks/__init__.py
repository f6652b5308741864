"""Benchmarks for troopauth's performance targets.

``python -m benchmarks [SECTION ...]`` compares verify with the floor and its
peers, and measures the stores at scale, writes and the ASGI middleware;
``python -m benchmarks.verify`` is the first benchmark (verify against the
floor, issue throughput). Timings live here, never in the test suite: see
``benchmarks/README.md``.
"""
