"""CategoricalNADE's training step against BinaryNADE's at the same D and H, in one run.

    python benchmarks/bench_categorical.py            # D=192 (8x8x3), H in 100,500, Q in 17,256, B=100
    python benchmarks/bench_categorical.py --quick    # a smoke run: H=32, 3 rounds

A step is one jitted Adam update on the mean NLL of a batch of B examples (forward and
backward through the library's engine), as the runner's. CategoricalNADE's read-out is
D·H·Q multiply-adds per example against BinaryNADE's D·H, so at Q = 256 the output layer
dominates; the table gives each step's median time, its ratio to BinaryNADE's in the same
run, and Q as the ratio of read-out work for scale.

Also timed: the categorical head as it was (``log_softmax`` then a gather, which forms the
(B, block, Q) log-probabilities), against today's chosen-logit-minus-logsumexp form, so the
change is measured, not assumed.

Methods run interleaved, ``--repeats`` rounds after one warm-up (compile) call each;
figures are medians. The load average (``os.getloadavg``) is printed with every table:
the machine is shared.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from nade_jax.models import BinaryNADE, CategoricalHead, CategoricalNADE, DensityModel, SharedWeightNADE


@dataclasses.dataclass(frozen=True)
class LogSoftmaxHead(CategoricalHead):
    """The categorical head's previous form: the (..., Q) log-softmax, then a gather."""

    def log_prob(self, outputs: jax.Array, x: jax.Array) -> jax.Array:
        index = x.astype(jnp.int32)[..., None]
        return jnp.take_along_axis(jax.nn.log_softmax(outputs, axis=-1), index, axis=-1)[..., 0]


@dataclasses.dataclass(frozen=True)
class OneHotHead(CategoricalHead):
    """The chosen logit as a product with a one-hot mask (no gather, no scatter in the
    backward pass), minus the logsumexp."""

    def log_prob(self, outputs: jax.Array, x: jax.Array) -> jax.Array:
        one_hot = jax.nn.one_hot(x.astype(jnp.int32), outputs.shape[-1], dtype=outputs.dtype)
        return jnp.sum(outputs * one_hot, axis=-1) - jax.nn.logsumexp(outputs, axis=-1)


class HeadNADE(CategoricalNADE):
    """CategoricalNADE with another head (a distinct static head class: no shared traces)."""

    def __init__(self, num_inputs: int, num_hidden: int, head: CategoricalHead, *, rngs: nnx.Rngs) -> None:
        SharedWeightNADE.__init__(self, num_inputs, num_hidden, head, rngs=rngs)


def train_step(model: DensityModel) -> Callable[[], None]:
    """A closure running one jitted Adam step on a fixed batch (new trace per closure)."""
    graphdef, state = nnx.split(model)
    tx = optax.adam(1e-3)
    opt_state = tx.init(state)

    @jax.jit
    def step(state, opt_state, x):
        loss, grads = jax.value_and_grad(lambda s: nnx.merge(graphdef, s).loss(x, None, None))(state)
        updates, opt_state = tx.update(grads, opt_state, state)
        return optax.apply_updates(state, updates), opt_state, loss

    return lambda x: step(state, opt_state, x)[2].block_until_ready()


def timed(run: Callable[[jax.Array], None], x: jax.Array) -> float:
    start = time.perf_counter()
    run(x)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-inputs", type=int, default=192)
    parser.add_argument("--hidden", default="100,500")
    parser.add_argument("--categories", default="17,256")
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    hidden = [32] if args.quick else [int(h) for h in args.hidden.split(",")]
    repeats = 3 if args.quick else args.repeats
    D, B = args.num_inputs, args.batch
    rng = np.random.default_rng(0)
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}; D={D}, B={B}, median of {repeats} rounds")
    for H in hidden:
        runs: dict[str, tuple[Callable[[jax.Array], None], jax.Array]] = {}
        binary = rng.integers(0, 2, (B, D)).astype(np.float32)
        runs["BinaryNADE"] = (train_step(BinaryNADE(D, H, rngs=nnx.Rngs(0))), jnp.asarray(binary))
        for Q in (int(q) for q in args.categories.split(",")):
            x = jnp.asarray(rng.integers(0, Q, (B, D)).astype(np.float32))
            runs[f"CategoricalNADE Q={Q}"] = (train_step(CategoricalNADE(D, H, Q, rngs=nnx.Rngs(0))), x)
            for label, head in (("log_softmax", LogSoftmaxHead(Q)), ("one-hot", OneHotHead(Q))):
                model = HeadNADE(D, H, head, rngs=nnx.Rngs(0))
                runs[f"CategoricalNADE Q={Q}, {label} head"] = (train_step(model), x)
        for run, x in runs.values():
            run(x)  # compile
        times: dict[str, list[float]] = {name: [] for name in runs}
        for _ in range(repeats):
            for name, (run, x) in runs.items():
                times[name].append(timed(run, x))
        base = statistics.median(times["BinaryNADE"])
        load = os.getloadavg()
        print(f"\nH={H}   load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
        print(f"{'model':42s} {'step ms':>9s} {'x Binary':>9s} {'read-out work x':>16s}")
        for name, values in times.items():
            median = statistics.median(values)
            work = name.split("Q=")[1].split(",")[0] if "Q=" in name else "1"
            print(f"{name:42s} {1e3 * median:9.2f} {median / base:9.2f} {work:>16s}")


if __name__ == "__main__":
    main()
