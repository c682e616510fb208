"""ACRNet's temporal sampling of a video's n features to the fixed length T (spec §1.2, official
``dataset.py`` ``random_sampling`` / ``uniform_sampling``), as a pure, vectorised function."""

from __future__ import annotations

import numpy as np

from tadkit.errors import TadkitError

__all__ = ["acrnet_sample_indices"]


def acrnet_sample_indices(n: int, T: int, training: bool, rng: np.random.Generator | int | None = None) -> np.ndarray:
    """Feature indices (int64) for a video of ``n`` features and target length ``T``.

    * training ("random sampling"): bin edges ``e_i = i * n / T`` (i < T), ``e_T = n``; bin i takes
      ``floor(e_i)`` when ``floor(e_i) == floor(e_{i+1})`` (short videos repeat indices), else a uniform
      random integer in ``[floor(e_i), floor(e_{i+1}))``. Always T indices, non-decreasing.
    * test ("uniform sampling"): ``arange(n)`` when ``n <= T`` (variable length: test with batch 1),
      else ``floor(i * n / T)`` for i < T.

    ``rng``: a NumPy Generator (or a seed) for the training draws; the official code uses the global
    ``np.random`` stream, so the draws (not their distribution) differ from it.
    """
    for name, value in (("n", n), ("T", T)):
        if isinstance(value, bool) or int(value) != value or value < 1:
            raise TadkitError(f"must be a positive integer, got {value!r}", field=name)
    n, T = int(n), int(T)
    if not training:
        if n <= T:
            return np.arange(n, dtype=np.int64)
        return np.floor(np.arange(T) * n / T).astype(np.int64)
    edges = np.append(np.arange(T) * n / T, n)
    lo = edges[:-1].astype(np.int64)  # int() of non-negative floats = floor
    hi = edges[1:].astype(np.int64)
    generator = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    draw = lo.copy()
    wide = hi > lo
    if wide.any():
        draw[wide] = generator.integers(lo[wide], hi[wide])
    return draw
