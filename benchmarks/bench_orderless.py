"""OrderlessNADE: exact evaluation under K orderings and sampling, against in-run baselines.

    python benchmarks/bench_orderless.py              # D=784, hidden (500, 500), B=100, K in 1,8,32
    python benchmarks/bench_orderless.py --quick      # a smoke run: small sizes, 1 repeat
    python benchmarks/bench_orderless.py --orderings 8 --variants 1:all,16:all

For each K it times ``orderings.log_prob_per_ordering`` (K·B example·orderings per call)
with the library default (``block_size="auto"``, the default ``chunk_size``) and with each
``--variants`` entry L:C (block size L; C orderings vmapped per ``lax.map`` step, ``all``
= all K at once), against two baselines written here independently of the library:

* **scan vmapped over K** (the issue's alternative): one ``lax.scan`` step per variable,
  ``jax.vmap`` over the K orderings, so the upper layers run on (K·B, H) rows and each step
  takes one read-out column.
* **naive** (K = 1 only, it is ~5× slower): D full forward passes of the network on
  [x ⊙ m_d, m_d], keeping the o_d-th read-out.

Nearly all the work of the incremental methods is the upper layers' matmuls, so each row
also gives the achieved GFLOP/s (useful multiply-adds × 2 / time, the same count for every
incremental method) against the **matmul peak** measured in the same run: a plain f32
(K·B, H_1) @ (H_1, H_2) matmul, the upper layer's shape, its fastest round.

Sampling: OrderlessNADE's ``sample`` (100 samples) against BinaryNADE's sampler (D, H_1
hidden units), the previous orderless sampler (a ``head.sample`` key per step), and the
matmul peak at (100, H_1) @ (H_1, H_2).

Methods run interleaved, ``--repeats`` rounds after one warm-up (compile) call; figures are
medians, ratios are against the fastest method of the same K measured in the same run.
"""

from __future__ import annotations

import argparse
import functools
import inspect
import itertools
import os
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from nade_jax import orderings
from nade_jax.models import BinaryNADE, OrderlessNADE
from nade_jax.models.nade import ACTIVATIONS

DEFAULT_CHUNK_SIZE = inspect.signature(orderings.log_prob_per_ordering).parameters["chunk_size"].default


# -- baselines, written independently of the library's evaluators ---------------------------
def scan_vmapped_over_orderings(model: OrderlessNADE, x: jax.Array, orders: jax.Array) -> jax.Array:
    """(K, B) log p(x) under each ordering: a per-variable scan, vmapped over the orderings."""
    act = ACTIVATIONS[model.activation]

    def one(ordering):
        inputs = (
            model.W_x[...][ordering],
            model.W_m[...][ordering],
            model.V[...][ordering],
            model.b[...][ordering],
            x[:, ordering].T,
        )

        def step(carry, inputs):
            a, total = carry
            W_x, W_m, V, b, x_d = inputs
            h = act(a)
            for layer in model.layers:
                h = act(layer(h))
            total = total + model.head.log_prob(h @ V + b, x_d)
            return (a + x_d[:, None] * W_x + W_m, total), None

        a0 = jnp.broadcast_to(model.c[...], (x.shape[0], model.hidden[0]))
        return jax.lax.scan(step, (a0, jnp.zeros(x.shape[0], x.dtype)), inputs)[0][1]

    return jax.vmap(one)(orders)


def naive_log_prob(model: OrderlessNADE, x: jax.Array, ordering: jax.Array) -> jax.Array:
    """(B,) log p(x) under ``ordering`` (D,) by D full forward passes: at step d the whole
    network runs on the (B, 2D) input [x ⊙ m_d, m_d] and, of its D read-outs, the o_d-th
    is kept."""
    D = model.num_inputs
    act = ACTIVATIONS[model.activation]
    rank = jnp.zeros(D, jnp.int32).at[ordering].set(jnp.arange(D, dtype=jnp.int32))
    W = jnp.concatenate([model.W_x[...], model.W_m[...]])  # (2D, H_1) acting on [x ⊙ m, m]

    def step(total, d):
        mask = (rank < d).astype(x.dtype)  # (D,) the variables before step d
        h = act(model.c[...] + jnp.concatenate([x * mask, jnp.broadcast_to(mask, x.shape)], axis=1) @ W)
        for layer in model.layers:
            h = act(layer(h))
        outputs = jnp.einsum("bh,dhp->bdp", h, model.V[...]) + model.b[...]  # (B, D, P): all read-outs
        i = ordering[d]
        return total + model.head.log_prob(outputs[:, i], x[:, i]), None

    return jax.lax.scan(step, jnp.zeros(x.shape[0], x.dtype), jnp.arange(D))[0]


def sample_with_step_keys(model: OrderlessNADE, key: jax.Array, num_samples: int) -> jax.Array:
    """The previous orderless sampler (identity ordering): ``head.sample`` with one key per
    step, i.e. random-number generation inside the scan."""

    def step(a, inputs):
        W_x, W_m, V, b, step_key = inputs
        value = model.head.sample(step_key, model._upper(a) @ V + b)
        return a + value[:, None] * W_x + W_m, value

    inputs = (model.W_x[...], model.W_m[...], model.V[...], model.b[...], jax.random.split(key, model.num_inputs))
    a0 = jnp.broadcast_to(model.c[...], (num_samples, model.hidden[0]))
    return jax.lax.scan(step, a0, inputs)[1].T


# -- counting and timing ---------------------------------------------------------------------
def multiply_adds(D: int, hidden: tuple[int, ...], P: int) -> dict[str, int]:
    """Multiply-adds per (example, ordering), from the layer shapes."""
    H1, HL = hidden[0], hidden[-1]
    upper = sum(a * b for a, b in itertools.pairwise(hidden))
    return {
        # Per step: the upper layers, one read-out, the rank-one first-layer update.
        "incremental": D * (upper + HL * P + H1),
        # Per step: the first layer on [x ⊙ m, m], the upper layers, all D read-outs.
        "naive": D * (2 * D * H1 + upper + D * HL * P),
    }


def interleaved(methods: dict, repeats: int, calls: dict | None = None) -> dict[str, list[float]]:
    """Seconds per call of each method in each of ``repeats`` interleaved rounds."""
    calls = calls or {}
    times = {name: [] for name in methods}
    for _ in range(repeats):
        for name, fn in methods.items():
            n = calls.get(name, 1)
            start = time.perf_counter()
            for _ in range(n):
                jax.block_until_ready(fn())
            times[name].append((time.perf_counter() - start) / n)
    return times


def peak_and_medians(times: dict[str, list[float]]) -> tuple[float, dict[str, float]]:
    """(the matmul's best round, the other methods' medians): a peak is what the machine
    can do, so its fastest round; a method's figure is its typical round."""
    peak = min(times.pop("matmul peak"))
    return peak, {name: statistics.median(values) for name, values in times.items()}


def parse_variants(text: str) -> list[tuple[int, int | None]]:
    variants = []
    for item in filter(None, text.split(",")):
        block, chunk = item.split(":")
        variants.append((int(block), None if chunk == "all" else int(chunk)))
    return variants


def evaluation(args, x, hidden) -> None:
    D, B = args.num_inputs, args.batch
    models = {"auto": OrderlessNADE(D, hidden, rngs=nnx.Rngs(0))}
    models["auto"].init_from_data(np.asarray(x))
    _, state = nnx.split(models["auto"])
    for block, _ in parse_variants(args.variants):
        if block not in models:
            model = OrderlessNADE(D, hidden, block_size=block, rngs=nnx.Rngs(0))
            nnx.update(model, state)  # the same parameters
            models[block] = model
    model = models["auto"]
    graphdef, state = nnx.split(model)
    flops = 2 * multiply_adds(D, hidden, model.head.num_outputs)["incremental"]
    U = jax.random.normal(jax.random.key(0), (hidden[0], hidden[1] if len(hidden) > 1 else hidden[0]))
    matmul = jax.jit(lambda a, u: a @ u)
    baseline = jax.jit(lambda s, x, o: scan_vmapped_over_orderings(nnx.merge(graphdef, s), x, o))
    naive = jax.jit(lambda s, x, o: jax.vmap(lambda oo: naive_log_prob(nnx.merge(graphdef, s), x, oo))(o))

    print(
        f"\n### Exact evaluation: OrderlessNADE D={D} hidden={hidden} B={B}; "
        f"auto block_size={model.block_size}, {args.repeats} interleaved rounds, medians"
    )
    print(f"useful work: {flops / 1e6:.0f} MFLOP per example·ordering (2 × multiply-adds of the incremental method)\n")
    print("| K | method | s per call | ex·ord / s | GFLOP/s | % of matmul peak | × fastest |")
    print("|---|---|---|---|---|---|---|")
    for K in [int(k) for k in args.orderings.split(",")]:
        orders = orderings.random_batch(jax.random.key(K), K, D)
        methods = {
            "default (auto block size, default chunk_size)": functools.partial(
                orderings.log_prob_per_ordering, model, x, orders
            )
        }
        effective = lambda block, chunk, K=K: (min(block, D), None if chunk is None or chunk >= K else chunk)
        seen = {effective(model.block_size, DEFAULT_CHUNK_SIZE)}
        for block, chunk in parse_variants(args.variants):
            if effective(block, chunk) in seen:
                continue  # the same computation as a method already listed
            seen.add(effective(block, chunk))
            name = f"block_size {block}, " + (
                "orderings vmapped" if chunk is None else f"{chunk} ordering(s) per lax.map step"
            )
            methods[name] = functools.partial(
                orderings.log_prob_per_ordering, models[block], x, orders, chunk_size=chunk
            )
        methods["baseline: per-variable scan vmapped over K (issue)"] = lambda o=orders: baseline(state, x, o)
        if K == 1 or args.naive_all:
            methods["baseline: naive, D full passes"] = lambda o=orders: naive(state, x, o)
        rows = jax.random.normal(jax.random.key(1), (K * B, U.shape[0]))
        methods["matmul peak"] = lambda r=rows: matmul(r, U)

        reference = np.asarray(methods["baseline: per-variable scan vmapped over K (issue)"](), np.float64)
        for name, fn in methods.items():  # compile, and check every method against the baseline
            value = np.asarray(fn())
            if name != "matmul peak":
                assert np.max(np.abs(value - reference)) < 1e-3 * np.max(np.abs(reference)), name
        matmul_calls = max(1, int(0.5 / max(2 * K * B * U.size / 50e9, 1e-6)))
        peak_seconds, median = peak_and_medians(interleaved(methods, args.repeats, {"matmul peak": matmul_calls}))
        peak = 2 * K * B * U.size / peak_seconds / 1e9
        fastest = min(median.values())
        for name, seconds in median.items():
            useful = K * B * flops / seconds / 1e9
            print(
                f"| {K} | {name} | {seconds:.3f} | {K * B / seconds:,.0f} | {useful:.0f} | "
                f"{100 * useful / peak:.0f} % | {seconds / fastest:.2f} |"
            )
        print(
            f"| {K} | matmul peak ({K * B}, {U.shape[0]}) @ {U.shape} f32 | — | — | {peak:.0f} | 100 % | — |",
            flush=True,
        )


def sampling(args, hidden) -> None:
    D, n = args.num_inputs, 100
    model = OrderlessNADE(D, hidden, rngs=nnx.Rngs(0))
    graphdef, state = nnx.split(model)
    nade_graphdef, nade_state = nnx.split(BinaryNADE(D, hidden[0], rngs=nnx.Rngs(0)))
    key = jax.random.key(0)
    ours = jax.jit(lambda s, k: nnx.merge(graphdef, s).sample(k, n))
    previous = jax.jit(lambda s, k: sample_with_step_keys(nnx.merge(graphdef, s), k, n))
    nade = jax.jit(lambda s, k: nnx.merge(nade_graphdef, s).sample(k, n))
    U = jax.random.normal(jax.random.key(0), (hidden[0], hidden[-1]))
    rows = jax.random.normal(jax.random.key(1), (n, hidden[0]))
    matmul = jax.jit(lambda a, u: a @ u)
    methods = {
        "OrderlessNADE.sample": lambda: ours(state, key),
        "baseline: previous orderless sampler (key per step)": lambda: previous(state, key),
        f"baseline: BinaryNADE.sample (H={hidden[0]})": lambda: nade(nade_state, key),
        "matmul peak": lambda: matmul(rows, U),
    }
    for fn in methods.values():
        jax.block_until_ready(fn())
    peak_seconds, median = peak_and_medians(interleaved(methods, args.repeats * 2, {"matmul peak": 50}))
    peak = 2 * n * U.size / peak_seconds / 1e9
    flops = 2 * n * multiply_adds(D, hidden, 1)["incremental"]
    print(f"\n### Sampling {n} examples, D={D}; {args.repeats * 2} interleaved rounds, medians\n")
    print("| method | ms | GFLOP/s | % of matmul peak | vs OrderlessNADE.sample |")
    print("|---|---|---|---|---|")
    for name, seconds in median.items():
        useful = flops / seconds / 1e9
        rate = "— | —" if "BinaryNADE" in name else f"{useful:.0f} | {100 * useful / peak:.0f} %"
        print(f"| {name} | {1e3 * seconds:.1f} | {rate} | {seconds / median['OrderlessNADE.sample']:.2f}× |")
    print(f"| matmul peak ({n}, {hidden[0]}) @ {U.shape} f32 | — | {peak:.0f} | 100 % | — |", flush=True)


def training(args, x, hidden) -> None:
    model = OrderlessNADE(args.num_inputs, hidden, rngs=nnx.Rngs(0))
    graphdef, params = nnx.split(model, nnx.Param)
    tx = optax.adam(1e-3)
    opt_state = tx.init(params)

    @functools.partial(jax.jit, donate_argnums=(0, 1))
    def train_step(params, opt_state, batch, key):
        loss, grads = jax.value_and_grad(lambda p: nnx.merge(graphdef, p).loss(batch, key))(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    state = [params, opt_state]

    def run():
        for step in range(args.train_steps):
            state[0], state[1], loss = train_step(*state, x, jax.random.key(step))
        return loss

    run()
    seconds = statistics.median(interleaved({"train": run}, args.repeats)["train"]) / args.train_steps
    print(f"\ntraining step (value_and_grad(loss) + adam, jit, B={args.batch}): {1e3 * seconds:.1f} ms")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="D=64, hidden (32, 32), B=10, 1 repeat: a smoke run")
    parser.add_argument("--num-inputs", type=int, default=784)
    parser.add_argument("--hidden", type=int, nargs="+", default=[500, 500])
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--orderings", default="1,8,32", help="comma-separated K")
    parser.add_argument(
        "--variants",
        default="1:all,1:1,16:all,16:1",
        help="block_size:chunk pairs (chunk = orderings per lax.map step, or all)",
    )
    parser.add_argument("--naive-all", action="store_true", help="time the naive baseline for every K")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--train-steps", type=int, default=10, help="steps per timed training repeat")
    parser.add_argument("--skip", default="", help="comma-separated parts to skip: evaluation,sampling,training")
    args = parser.parse_args()
    if args.quick:
        args.num_inputs, args.hidden, args.batch, args.repeats, args.train_steps = 64, [32, 32], 10, 1, 2
    hidden = tuple(args.hidden)
    x = jnp.asarray((np.random.default_rng(0).random((args.batch, args.num_inputs)) < 0.3).astype(np.float32))
    device = jax.devices()[0]
    print(
        f"device: {device.platform} ({device.device_kind}); load average at start "
        f"{', '.join(f'{v:.1f}' for v in os.getloadavg())}; jax {jax.__version__}"
    )
    skip = set(args.skip.split(","))
    if "evaluation" not in skip:
        evaluation(args, x, hidden)
    if "sampling" not in skip:
        sampling(args, hidden)
    if "training" not in skip:
        training(args, x, hidden)
    print(f"\nload average at end: {', '.join(f'{v:.1f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
