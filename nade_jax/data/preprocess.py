"""Pixel transforms shared by the loaders. Arrays are (N, D) unless stated."""

from __future__ import annotations

import jax
import numpy as np

# Pixels whose train std is below this are left unscaled (they are constant in train).
_MIN_STD = 1e-6


def binarise(x: np.ndarray, threshold: float) -> np.ndarray:
    """(N, D) float32 0/1: 1 where ``x >= threshold``."""
    return (np.asarray(x) >= threshold).astype(np.float32)


def bernoulli_sample(probs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(N, D) float32 0/1 images drawn once with P(x_d = 1) = probs_d."""
    return (rng.random(probs.shape) < probs).astype(np.float32)


def dynamic_binarize(key: jax.Array, probs: jax.Array, rows: jax.Array | None = None) -> jax.Array:
    """(B, D) fresh 0/1 images for one training batch of grey levels ``probs`` in [0, 1].

    Row i's noise comes from ``fold_in(key, rows[i])`` alone, where ``rows`` (B,) are the
    rows' indices in the global batch (None: 0 … B−1): a process that holds a slice of the
    batch draws the images the whole batch would. Jittable; used by the runner when
    ``Splits.dynamic_binarization`` is set.
    """
    rows = jax.numpy.arange(probs.shape[0]) if rows is None else rows
    noise = jax.vmap(lambda row: jax.random.uniform(jax.random.fold_in(key, row), probs.shape[1:]))(rows)
    return (noise < probs).astype(probs.dtype)


def dequantise(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(N, D) float32 ``x + u`` with u ~ U[0, 1): integer pixels become a continuous density.

    Every value stays below x + 1 (rounding to float32 could reach it), so ``floor`` recovers x."""
    x = np.asarray(x, np.float64)
    noisy = (x + rng.random(np.shape(x))).astype(np.float32)
    return np.minimum(noisy, np.nextafter((x + 1).astype(np.float32), np.float32(-np.inf)))


def standardise(train: np.ndarray, *others: np.ndarray) -> tuple[tuple[np.ndarray, ...], np.ndarray, np.ndarray]:
    """Standardises every array with the per-pixel mean and std of ``train``.

    Returns:
      (arrays, mean, std): the standardised ``(train, *others)`` as float32, and the (D,)
      float32 mean and std used (std is 1 where train is constant, so nothing divides by 0).
    """
    train = np.asarray(train, np.float64)
    mean = train.mean(0)
    std = train.std(0)
    std = np.where(std < _MIN_STD, 1.0, std)
    arrays = tuple(((np.asarray(a, np.float64) - mean) / std).astype(np.float32) for a in (train, *others))
    return arrays, mean.astype(np.float32), std.astype(np.float32)
