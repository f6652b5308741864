"""Benchmarks for troopauth's performance targets (run ``python -m benchmarks.verify``).

Timings live here, never in the test suite: see ``benchmarks/README.md``.
"""
