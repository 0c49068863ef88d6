"""Benchmarks run by ``make bench``. Each prints its figure as a ratio to a baseline measured in the
same run on the same machine, and ``benchmarks.run`` writes bench-results/results.{json,md}."""
