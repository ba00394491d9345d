"""OrderlessNADE: exact evaluation under K orderings, incremental vs D full forward passes,
and the training-step time.

    python benchmarks/bench_orderless.py            # D=784, hidden (500, 500), B=100, K=8
    python benchmarks/bench_orderless.py --quick    # a smaller batch and fewer repeats

Methods run interleaved, ``--repeats`` times each after one warm-up (compile) call;
figures are medians. Throughput is examples·orderings per second.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from nade_jax import orderings
from nade_jax.models import OrderlessNADE
from nade_jax.models.nade import ACTIVATIONS


def naive_log_prob(model: OrderlessNADE, x: jax.Array, ordering: jax.Array, hoist_mask: bool = False) -> jax.Array:
    """(B,) log p(x) under ``ordering`` (D,) by D full forward passes: at step d the whole
    network runs on the (B, 2D) input [x ⊙ m_d, m_d] and, of its D read-outs, the o_d-th
    is kept.

    ``hoist_mask`` exploits that m_d is shared by the batch: m_d W_m is then one (D,)·(D, H)
    product per step instead of a (B, D) @ (D, H) matmul.
    """
    D = model.num_inputs
    act = ACTIVATIONS[model.activation]
    rank = jnp.zeros(D, jnp.int32).at[ordering].set(jnp.arange(D, dtype=jnp.int32))
    W = jnp.concatenate([model.W_x[...], model.W_m[...]])  # (2D, H_1) acting on [x ⊙ m, m]

    def step(total, d):
        mask = (rank < d).astype(x.dtype)  # (D,) the variables before step d
        if hoist_mask:
            pre = (x * mask) @ model.W_x[...] + mask @ model.W_m[...]
        else:
            pre = jnp.concatenate([x * mask, jnp.broadcast_to(mask, x.shape)], axis=1) @ W
        h = act(model.c[...] + pre)
        for layer in model.layers:
            h = act(layer(h))
        outputs = jnp.einsum("bh,dhp->bdp", h, model.V[...]) + model.b[...]  # (B, D, P): all read-outs
        i = ordering[d]
        return total + model.head.log_prob(outputs[:, i], x[:, i]), None

    total, _ = jax.lax.scan(step, jnp.zeros(x.shape[0], x.dtype), jnp.arange(D))
    return total


@functools.partial(jax.jit, static_argnums=(0, 4))
def naive_per_ordering(graphdef, state, x, orders, hoist_mask):
    """(K, B) ``naive_log_prob`` under each of the K orderings, vmapped."""
    model = nnx.merge(graphdef, state)
    return jax.vmap(lambda o: naive_log_prob(model, x, o, hoist_mask))(orders)


def multiply_adds(D: int, hidden: tuple[int, ...], P: int, block: int) -> dict[str, int]:
    """Multiply-adds per (example, ordering) of each method, from the layer shapes."""
    H1, HL = hidden[0], hidden[-1]
    upper = sum(a * b for a, b in zip(hidden, hidden[1:]))
    per_step = {
        "naive": 2 * D * H1 + upper + D * HL * P,
        "naive, m·W_m hoisted": D * H1 + upper + D * HL * P,
        # The block's triangular matmul costs K·H_1 per variable, its carry update H_1.
        "incremental": block * H1 + H1 + upper + HL * P,
    }
    return {name: D * count for name, count in per_step.items()}


def timed(fn, *args):
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="B=10, 2 repeats: a smoke run")
    parser.add_argument("--num-inputs", type=int, default=784)
    parser.add_argument("--hidden", type=int, nargs="+", default=[500, 500])
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--orderings", type=int, default=8)
    parser.add_argument("--block-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--train-steps", type=int, default=10, help="steps per timed training repeat")
    args = parser.parse_args()
    if args.quick:
        args.batch, args.repeats, args.train_steps = 10, 2, 3

    D, B, K = args.num_inputs, args.batch, args.orderings
    model = OrderlessNADE(D, tuple(args.hidden), block_size=args.block_size, rngs=nnx.Rngs(0))
    rng = np.random.default_rng(0)
    x = jnp.asarray((rng.random((B, D)) < 0.3).astype(np.float32))
    model.init_from_data(np.asarray(x))
    orders = orderings.random_batch(jax.random.key(1), K, D)

    graphdef, state = nnx.split(model)
    per_ordering = functools.partial(orderings.log_prob_per_ordering, model, x, orders)
    methods = {
        # log_prob_per_ordering vmaps the K orderings (chunk_size=None) or lax.maps them one
        # at a time (chunk_size=1), which keeps a block's (block_size, B, H) activations in cache.
        "incremental, orderings vmapped": lambda: per_ordering(chunk_size=None),
        "incremental, orderings mapped": lambda: per_ordering(chunk_size=1),
        "naive": lambda: naive_per_ordering(graphdef, state, x, orders, False),
        "naive, m·W_m hoisted": lambda: naive_per_ordering(graphdef, state, x, orders, True),
    }

    params_graphdef, params = nnx.split(model, nnx.Param)
    params = jax.tree.map(jnp.copy, params)  # the step donates its buffers; the evaluators keep theirs
    tx = optax.adam(1e-3)
    opt_state = tx.init(params)

    @functools.partial(jax.jit, donate_argnums=(0, 1))
    def train_step(params, opt_state, batch, key):
        loss, grads = jax.value_and_grad(lambda p: nnx.merge(params_graphdef, p).loss(batch, key))(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    def train(steps):
        nonlocal params, opt_state
        for step in range(steps):
            params, opt_state, loss = train_step(params, opt_state, x, jax.random.key(step))
        return loss

    # Warm-up: compile everything and check that the evaluators agree.
    results = {name: fn() for name, fn in methods.items()}
    reference = results["naive"]
    difference = max(float(jnp.max(jnp.abs(value - reference))) for value in results.values())
    train(1)

    times = {name: [] for name in [*methods, "train"]}
    for _ in range(args.repeats):
        for name, fn in methods.items():
            times[name].append(timed(fn))
        times["train"].append(timed(train, args.train_steps) / args.train_steps)
    median = {name: statistics.median(values) for name, values in times.items()}

    device = jax.devices()[0]
    counts = multiply_adds(D, tuple(args.hidden), model.head.num_outputs, model.block_size)
    print(
        f"OrderlessNADE D={D} hidden={tuple(args.hidden)} B={B} K={K} orderings, block_size={model.block_size}, "
        f"{args.repeats} interleaved repeats, medians; device: {device.platform} ({device.device_kind})"
    )
    print(f"max |log p - naive log p| over methods: {difference:.2e} (log p ~ {float(reference.mean()):.1f})")
    print("| exact log_prob method | s per call | ex·ord / s | speed-up vs naive | multiply-adds per ex·ord |")
    print("|---|---|---|---|---|")
    for name in methods:
        count = counts["incremental" if name.startswith("incremental") else name]
        print(
            f"| {name} | {median[name]:.3f} | {B * K / median[name]:,.0f} | "
            f"{median['naive'] / median[name]:.2f}x | {count / 1e9:.3f} G |"
        )
    print(
        f"multiply-add ratios: naive / incremental {counts['naive'] / counts['incremental']:.2f}x, "
        f"hoisted naive / incremental {counts['naive, m·W_m hoisted'] / counts['incremental']:.2f}x"
    )
    print(f"training step (value_and_grad(loss) + adam, jit, B={B}): {1e3 * median['train']:.1f} ms")


if __name__ == "__main__":
    main()
