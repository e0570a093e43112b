"""Evaluation on the paper's benchmarks in their native formats."""
