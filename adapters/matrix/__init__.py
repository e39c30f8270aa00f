"""The Matrix adapter: the only package that imports matrix-nio.

Start it with :func:`run_matrix` (runs until cancelled) or :class:`MatrixBot` (``start``/``close``,
or ``async with``).
"""

from adapters.matrix.client import MatrixBot, run_matrix
from adapters.matrix.config import MatrixConfig

__all__ = ["MatrixBot", "MatrixConfig", "run_matrix"]
