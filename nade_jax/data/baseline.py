"""The independent (fully factorised) baseline the runner logs beside each model."""

from __future__ import annotations

import numpy as np

from nade_jax.data.splits import Splits

# Bernoulli marginals are clipped to [EPS, 1 - EPS] so pixels never on (or always on) in
# train do not give an infinite test NLL.
EPS = 1e-3
# Floor for the Gaussian variances, for pixels constant in train.
MIN_VAR = 1e-6


def independent_baseline_nll(splits: Splits) -> float:
    """Mean test NLL in nats per example of an independent model fitted on ``splits.train``.

    Binary data: a product of Bernoulli marginals p_d = clip(mean_n train[n, d]) (for
    dynamically binarised data the mean grey level is the marginal of the sampled pixels).
    Real data: a diagonal Gaussian with the train per-pixel mean and variance; the NLL is in
    the units of the arrays (standardised units for ``digits_real``).
    Categorical data: per-pixel frequencies on train with one pseudo-count per value.
    """
    train = splits.train.astype(np.float64)
    test = splits.test.astype(np.float64)
    if splits.binary:
        p = np.clip(train.mean(0), EPS, 1 - EPS)
        log_prob = test @ np.log(p) + (1 - test) @ np.log1p(-p)
    elif splits.num_categories is not None:
        Q = splits.num_categories
        counts = np.stack([np.bincount(column.astype(int), minlength=Q) for column in train.T])  # (D, Q)
        log_p = np.log((counts + 1.0) / (len(train) + Q))
        log_prob = log_p[np.arange(test.shape[1]), test.astype(int)].sum(1)
    else:
        mean = train.mean(0)
        var = np.maximum(train.var(0), MIN_VAR)
        log_prob = -0.5 * (np.log(2 * np.pi * var) + (test - mean) ** 2 / var).sum(1)
    return float(-log_prob.mean())
