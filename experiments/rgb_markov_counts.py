"""The rgb_patches Markov-chain row: the categorical chain fitted in closed form (smoothed
transition counts, ``CategoricalMarkovChain.fit_counts``) under each ordering of the ordering
comparison, its pseudo-count and smoothing centre (marginal or uniform) chosen on validation
only.

    python experiments/rgb_markov_counts.py          (~1 min on 2 CPU cores, offline)

A closed-form fit has no training seed: the row's spread is over the three random orderings
(seeds 0, 1, 2, as drawn by experiments/rgb_compare_orderings.yaml), the fixed orderings
have one fit each. Prints a markdown table: the chosen smoothing, best validation NLL (nats per
patch) and test bits/dim per ordering.
"""

from __future__ import annotations

import os
import time

from nade_jax import data, evaluation, orderings
from nade_jax.models import CategoricalMarkovChain

PSEUDO_COUNTS = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0)
ORDERINGS = [("pixel_rgb", 0), ("channel_major", 0), ("random", 0), ("random", 1), ("random", 2)]


def main() -> None:
    start, load = time.perf_counter(), os.getloadavg()
    splits = data.load("rgb_patches")
    chain = CategoricalMarkovChain(splits.num_inputs, splits.num_categories)
    print(f"rgb_patches: {len(splits.train)} / {len(splits.val)} / {len(splits.test)} patches; load {load}")
    print("| ordering | smoothing (chosen on validation) | val NLL (nats) | test NLL (nats) | test bits/dim |")
    print("|---|---|---:|---:|---:|")
    for kind, seed in ORDERINGS:
        ordering = orderings.make(kind, splits.num_inputs, seed=seed, image_shape=splits.image_shape)
        scores = {}
        for towards in ("marginal", "uniform"):
            for alpha in PSEUDO_COUNTS:
                chain.fit_counts(splits.train, ordering, pseudo_count=alpha, towards=towards)
                scores[(alpha, towards)] = evaluation.nll(chain, splits.val, ordering)
        alpha, towards = min(scores, key=scores.__getitem__)
        chain.fit_counts(splits.train, ordering, pseudo_count=alpha, towards=towards)
        test = evaluation.nll(chain, splits.test, ordering)
        bits = splits.bits_per_dim(test)
        chosen = f"a = {alpha}, towards {towards}"
        print(
            f"| {orderings.label(kind, seed)} | {chosen} | {scores[(alpha, towards)]:.2f} | {test:.2f} | {bits:.4f} |"
        )
    print(f"wall {time.perf_counter() - start:.0f} s; load at the end {os.getloadavg()}")


if __name__ == "__main__":
    main()
