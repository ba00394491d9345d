"""Naive float64 references, written independently of the library's vectorised code."""

import numpy as np


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def _log_normal(x, mean, scale):
    return -0.5 * ((x - mean) / scale) ** 2 - np.log(scale) - 0.5 * np.log(2 * np.pi)


def _logsumexp(v, axis=-1):
    m = np.max(v, axis=axis, keepdims=True)
    return (m + np.log(np.sum(np.exp(v - m), axis=axis, keepdims=True))).squeeze(axis)


def params_of(model):
    """The model's parameters as float64 numpy arrays, keyed by attribute name."""
    names = ["W", "c", "V", "b"] + (["rho"] if getattr(model, "rho", None) is not None else [])
    return {n: np.asarray(getattr(model, n)[...], np.float64) for n in names}


def nade_log_prob(params, x, ordering, head="bernoulli", min_scale=1e-3, activation=_sigmoid):
    """log p(x) by a Python loop over examples and dimensions, per the NADE definition.

    params: W (D, H), c (H,), V (D, H, P), b (D, P), optional rho (D,) per step.
    """
    x = np.asarray(x, np.float64)
    out = np.zeros(x.shape[0])
    for n in range(x.shape[0]):
        a = params["c"].copy()
        total = 0.0
        for d, i in enumerate(ordering):
            pre = a * params["rho"][d] if "rho" in params else a
            h = activation(pre)
            y = h @ params["V"][i] + params["b"][i]
            if head == "bernoulli":
                p1 = _sigmoid(y[0])
                total += np.log(p1 if x[n, i] == 1 else 1 - p1)
            else:
                c = y.shape[0] // 3
                logits, means, raw = y[:c], y[c : 2 * c], y[2 * c :]
                log_w = logits - _logsumexp(logits)
                scales = np.log1p(np.exp(raw)) + min_scale
                total += _logsumexp(log_w + _log_normal(x[n, i], means, scales))
            a = a + params["W"][i] * x[n, i]
        out[n] = total
    return out
