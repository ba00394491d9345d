"""CategoricalNADE beyond the generic contract suite: a naive float64 reference."""

import numpy as np
import pytest
from conftest import scale_params
from flax import nnx

from nade_jax.models import CategoricalNADE, bits_per_dim


def naive_log_prob(model, x, ordering):
    """log p(x) (B,) by loops over examples and steps: a = c; for each step,
    p(x_i | ·) = softmax(σ(a) V[i] + b[i]), then a += W[i, x_i]."""
    W, c, V, b = (np.asarray(getattr(model, name)[...], np.float64) for name in ("W", "c", "V", "b"))
    out = []
    for row in np.asarray(x, np.int64):
        a, total = c.copy(), 0.0
        for i in ordering:
            logits = (1 / (1 + np.exp(-a))) @ V[i] + b[i]
            total += logits[row[i]] - np.log(np.exp(logits - logits.max()).sum()) - logits.max()
            a = a + W[i, row[i]]
        out.append(total)
    return np.array(out)


def test_matches_naive_float64_reference():
    D, Q = 7, 5
    model = scale_params(CategoricalNADE(D, 6, Q, block_size=3, rngs=nnx.Rngs(0)), 2.0)
    x = np.random.default_rng(0).integers(0, Q, (9, D)).astype(np.float32)
    for seed in range(3):
        ordering = np.random.default_rng(seed).permutation(D)
        np.testing.assert_allclose(
            model.log_prob(x, ordering), naive_log_prob(model, x, ordering), rtol=1e-5, atol=1e-5
        )


def test_bits_per_dim():
    assert bits_per_dim(64 * np.log(2.0) * 3, 64) == 3.0


def test_runner_pairs_categorical_models_with_categorical_data_and_reports_bits_per_dim():
    """The runner refuses a categorical model on real data (and a wrong category count), and
    reports bits/dim for categorical data."""
    from hydra import compose, initialize_config_dir

    from nade_jax import CONFIG_DIR, evaluation
    from nade_jax.run import build, config, errors

    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        typed = lambda overrides: config.parse_run(compose("config", overrides=overrides))
        cfg = typed(["model=categorical_nade", "data=digits_real", "model.num_hidden=4"])
        with pytest.raises(errors.ConfigError, match="needs categorical data, but data=digits_real is real"):
            build.build_model(cfg.model, build.load_data(cfg.data), cfg.seed)
        cfg = typed(["model=categorical_nade", "data=digits_levels", "model.num_hidden=4", "model.num_categories=5"])
        splits = build.load_data(cfg.data)
        with pytest.raises(errors.ConfigError, match=r"model\.num_categories must be 17"):
            build.build_model(cfg.model, splits, cfg.seed)
        cfg = typed(["model=categorical_nade", "data=digits_levels", "model.num_hidden=4"])
        model = build.build_model(cfg.model, splits, cfg.seed)
    result = evaluation.final_evaluation(model, splits, None, num_orderings=0, orderings_seed=0)
    nll = result.metrics["test/nll"]
    assert result.metrics["test/bits_per_dim"] == pytest.approx(nll / (splits.num_inputs * np.log(2)))
    assert "bits/dim" in result.line()
