"""Compiled kernels (built from ext/ by setup.py)."""
