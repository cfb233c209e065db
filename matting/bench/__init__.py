"""Benchmarks that print tables (docs/BENCHMARKS.md holds the figures and the machines they came from):

    python -m matting.bench              # per stage, against the seed's naive pipeline (pipeline.py)
    python -m matting.bench --batch      # the batch engine's throughput and its stage table (batch.py)
    python -m matting.bench.inference    # the network alone, in every precision and runtime (inference.py)

Nothing in the engine imports them.
"""
