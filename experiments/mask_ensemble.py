"""Test NLL of finished runs as ensembles over the model's own evaluation orderings.

For models whose ``evaluation_orderings(K)`` names the set they were trained on (MADE with
``num_masks``), this reports the mean ± s.e. of the single-mask test NLLs and the K-mask
ensemble (log-mean-exp of the likelihoods per example), in nats:

    python experiments/mask_ensemble.py outputs/made_masks_s0 [more run dirs] [--num 32] [--params best]

Until the runner asks the model for its evaluation orderings (it uses identity, reverse and
seeded random ones for every orderless model, and selects the best parameters by the
validation NLL under the training ordering, which is not one of MADE's masks), this is how
MADE's mask ensembles are read. ``--params final`` (the default) takes the last checkpoint's
parameters, with no selection; ``best`` the runner's selection.
"""

import argparse
from pathlib import Path

import numpy as np
import orbax.checkpoint as ocp
from flax import nnx

from nade_jax import log_prob_per_ordering
from nade_jax.train import restore_run


def final_params(model, run_dir: Path):
    """``model`` with the parameters of the run's latest checkpoint (not the best ones)."""
    manager = ocp.CheckpointManager((run_dir / "checkpoints").absolute())
    saved = manager.restore(manager.latest_step(), args=ocp.args.StandardRestore())["params"]
    unwrap = lambda tree: tree["value"] if set(tree) == {"value"} else {k: unwrap(v) for k, v in tree.items()}
    graphdef, state = nnx.split(model)
    state.replace_by_pure_dict(unwrap(saved))
    return nnx.merge(graphdef, state), manager.latest_step()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("run_dirs", nargs="+", type=Path)
    parser.add_argument("--num", type=int, default=32, help="K, the number of masks")
    parser.add_argument("--params", choices=("final", "best"), default="final")
    args = parser.parse_args()
    for run_dir in args.run_dirs:
        model, splits, _ = restore_run(run_dir)
        step = "best"
        if args.params == "final":
            model, step = final_params(model, run_dir)
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
        print(f"{run_dir} ({args.params} parameters, step {step}): single mask {nll.mean():.3f} ± {nll.std(ddof=1) / np.sqrt(len(nll)):.3f} "
              f"(best {nll.min():.3f}); ensemble of {len(nll)} masks {ensemble:.3f} nats")


if __name__ == "__main__":
    main()
