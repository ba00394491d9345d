"""Test NLL of finished runs as ensembles over the model's own evaluation orderings.

For models whose ``evaluation_orderings(K)`` names the set they were trained on (MADE with
``num_masks``), this reports the mean ± s.e. of the single-mask test NLLs and the K-mask
ensemble (log-mean-exp of the likelihoods per example), in nats:

    python experiments/mask_ensemble.py outputs/made_masks_s0 [more run dirs] [--num 32]

Until the runner asks the model for its evaluation orderings (it uses identity, reverse and
seeded random ones for every orderless model), this is how MADE's mask ensembles are read.
"""

import argparse
from pathlib import Path

import numpy as np

from nade_jax import log_prob_per_ordering
from nade_jax.train import restore_run


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("run_dirs", nargs="+", type=Path)
    parser.add_argument("--num", type=int, default=32, help="K, the number of masks")
    args = parser.parse_args()
    for run_dir in args.run_dirs:
        model, splits, _ = restore_run(run_dir)
        masks = model.evaluation_orderings(args.num)
        if masks is None:
            raise SystemExit(f"{run_dir}: the model has no evaluation orderings of its own")
        per_mask = np.concatenate(
            [np.asarray(log_prob_per_ordering(model, splits.test[i : i + 500], masks)) for i in range(0, len(splits.test), 500)],
            axis=1,
        ).astype(np.float64)  # (K, N)
        nll = -per_mask.mean(axis=1)
        peak = per_mask.max(axis=0)
        ensemble = -(peak + np.log(np.exp(per_mask - peak).mean(axis=0))).mean()
        print(f"{run_dir}: single mask {nll.mean():.3f} ± {nll.std(ddof=1) / np.sqrt(len(nll)):.3f} "
              f"(best {nll.min():.3f}); ensemble of {len(nll)} masks {ensemble:.3f} nats")


if __name__ == "__main__":
    main()
