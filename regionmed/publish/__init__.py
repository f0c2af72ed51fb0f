"""Published numbers: benchmark results files (record) and the docs' generated blocks (blocks, render).

Nothing here imports torch, pandas or the pipeline: a benchmark imports :mod:`record` at its start,
and ``python -m regionmed docs`` renders the docs in well under a second.
"""
