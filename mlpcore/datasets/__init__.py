"""Data sets that ship with mlpcore, and readers for common file formats."""

from mlpcore.datasets._digits import load_digits

__all__ = ["load_digits"]
