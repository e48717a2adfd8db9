"""Demos: the paper's toy example, and real networks."""
