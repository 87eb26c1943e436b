"""Benchmarks (``python bench/<name>.py``, or ``make bench`` for all): a package too, so that tests can
import a benchmark's own bookkeeping (``from bench import bench_mutation``) the way they import the kit."""
