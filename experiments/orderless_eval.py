"""The papers' evaluation protocol for a finished orderless run, from its checkpoint.

    python experiments/orderless_eval.py outputs/mnist5k/mnist5k_eonade_2hl [--num-orderings 128]

Uria et al. (2014) and their reference code report, on the test set:
- the single-ordering figure: mean ± standard error of the test NLL over 10 random orderings;
- ensembles: log-mean-exp of p(x | o) over K random orderings, K = 1, 2, 4, …, 128;
and select models on validation with the masked-objective estimate averaged over 16 mask
draws. The orderings are ``orderings.random_batch(jax.random.key(seed), K, D)`` (seed 1234
by default): the same set for every run. The first ``--num-single`` of them give the
mean ± s.e.; the ensemble of size K uses the first K. Identity and reverse are reported too,
labelled as such. ``--time-budget`` stops adding orderings (in chunks) when it is spent;
ensembles are then reported up to the largest power of 2 done, and the JSON says so.

Writes RUN_DIR/orderless_eval.json and prints a summary.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import jax
import numpy as np

from nade_jax import orderings as ordering_lib
from nade_jax.evaluate import ensemble_sizes
from nade_jax.orderings import log_prob_per_ordering


def restore(run_dir: Path):
    """(model with the best parameters, splits, config) of a finished run."""
    try:
        from nade_jax.runs import restore_run
    except ImportError:  # the runner before its restructure (commit 37f5d6f), which made the mnist5k runs
        from nade_jax.train import restore_run

        return restore_run(run_dir)
    run = restore_run(run_dir)
    return run.model, run.splits, run.cfg


def per_ordering_log_probs(model, x, orderings, batch_size=500, chunk=16, deadline=None):
    """(K_done, N) float64 exact log p(x | o_k), chunk orderings at a time until ``deadline``."""
    rows = []
    for start in range(0, len(orderings), chunk):
        if deadline is not None and rows and time.monotonic() > deadline:
            break
        block = orderings[start : start + chunk]
        rows.append(np.concatenate(
            [np.asarray(log_prob_per_ordering(model, x[i : i + batch_size], block, chunk))
             for i in range(0, len(x), batch_size)], axis=1).astype(np.float64))
    return np.concatenate(rows)


def ensemble_nll(log_probs: np.ndarray) -> float:
    """Mean over examples of −log (1/K Σ_k p(x | o_k)), log_probs (K, N)."""
    peak = log_probs.max(axis=0)
    return float(-(peak + np.log(np.exp(log_probs - peak).mean(axis=0))).mean())


def masked_objective_estimate(model, x, num_draws=16, seed=0, batch_size=500) -> tuple[float, float]:
    """The reference's validation estimate: the masked objective (an unbiased estimate of
    the ordering-averaged NLL) averaged over ``num_draws`` mask draws; (mean, s.e.)."""
    values = []
    for draw in range(num_draws):
        key = jax.random.fold_in(jax.random.key(seed), draw)
        total = sum(float(model.loss(x[i : i + batch_size], jax.random.fold_in(key, i))) * len(x[i : i + batch_size])
                    for i in range(0, len(x), batch_size))
        values.append(total / len(x))
    return float(np.mean(values)), float(np.std(values, ddof=1) / np.sqrt(num_draws))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--num-orderings", type=int, default=128)
    parser.add_argument("--num-single", type=int, default=10)
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--time-budget", type=float, default=None, help="seconds for the ensemble orderings")
    parser.add_argument("--no-named", action="store_true", help="skip the identity and reverse orderings")
    args = parser.parse_args()

    started = time.monotonic()
    model, splits, _ = restore(args.run_dir)
    if not getattr(model, "is_orderless", False):
        raise SystemExit(f"{args.run_dir}: {type(model).__name__} is not orderless; it is evaluated under its training ordering")
    D = model.num_inputs
    val_estimate = masked_objective_estimate(model, splits.val)
    orderings = ordering_lib.random_batch(jax.random.key(args.seed), args.num_orderings, D)
    deadline = None if args.time_budget is None else time.monotonic() + args.time_budget
    log_probs = per_ordering_log_probs(model, splits.test, orderings, deadline=deadline)
    done = len(log_probs)
    single = -log_probs[: args.num_single].mean(axis=1)
    result = {
        "run_dir": str(args.run_dir),
        "orderings": f"random_batch(key({args.seed}), {args.num_orderings}, {D})",
        "val/masked_objective_16": {"mean": val_estimate[0], "se": val_estimate[1]},
        "test/random_ordering_nll": {"mean": float(single.mean()), "se": float(single.std(ddof=1) / np.sqrt(len(single))),
                                     "num_orderings": len(single), "per_ordering": single.tolist()},
        "test/mean_nll_all_orderings_done": float(-log_probs.mean()),
        "test/ensemble_nll": {str(k): ensemble_nll(log_probs[:k]) for k in ensemble_sizes(done) if k & (k - 1) == 0},
        "num_orderings_done": done,
    }
    if not args.no_named:
        named = np.stack([ordering_lib.identity(D), ordering_lib.reverse(D)])
        fixed = per_ordering_log_probs(model, splits.test, named)
        result["test/identity_ordering_nll"] = float(-fixed[0].mean())
        result["test/reverse_ordering_nll"] = float(-fixed[1].mean())
    result["wall_s"] = round(time.monotonic() - started, 1)
    (args.run_dir / "orderless_eval.json").write_text(json.dumps(result, indent=2))
    s = result["test/random_ordering_nll"]
    print(f"{args.run_dir}: test NLL over {len(single)} random orderings {s['mean']:.2f} ± {s['se']:.2f}; "
          f"ensembles {', '.join(f'K={k} {v:.2f}' for k, v in result['test/ensemble_nll'].items())}; "
          f"val masked estimate {val_estimate[0]:.2f} ± {val_estimate[1]:.2f}; {result['wall_s']} s")


if __name__ == "__main__":
    main()
