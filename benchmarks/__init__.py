"""
Load benchmarks, run by hand: C{python -m benchmarks.bench --help}.
"""
