"""Reversible scan: the O(B·H)-memory engine under every shared-weight NADE.

A NADE pass carries one hidden pre-activation ``a`` of shape (B, H) through D steps and
updates it additively, ``a_next = a + delta(block)``. The steps are grouped into blocks of
K variables, so the scan runs D/K times. Within a block, ``block_carries`` gives the carry
before each of the K variables as one masked matmul, so a block costs a fixed number of
kernels whatever K is. ``block_size="auto"`` (``resolve_block_size``) picks K per backend:
1 on CPU, where one cache-resident (B, H) slab per step is fastest, and a larger K on
GPU/TPU, where each step's kernels are too small to hide their launch latency
(benchmarks/RESULTS.md has the measurements and the analysis).

Autodiff through ``lax.scan`` would stack a (B, H) residual per block. Instead the backward
pass walks the blocks in reverse and recovers each block's starting ``a`` by subtraction,
``a = a_next - delta(block)``, so forward and backward both use O(B·K·H) memory, never
O(B·D·H). Two entry points share the reverse walk:

* ``reversible_scan`` returns every block's output and has a general ``custom_vjp``.
* ``reversible_weighted_sum`` returns the scalar Σ weights·outputs; its forward computes
  the value *and* the gradient in the single reverse walk (it needs only the final carry,
  which the caller may pass when it is cheaper to compute directly), so a training step
  costs one pass over the hidden units instead of two.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
from jax.typing import DTypeLike

# A pytree of arrays (dicts of per-step parameters, per-block data); jax has no static type for it.
PyTree = Any
# out_fn(a (B, H), params_block, data_block) -> outputs (B, K)
OutFn = Callable[[jax.Array, Any, Any], jax.Array]
# delta_fn(params_block, data_block) -> (B, H), independent of a
DeltaFn = Callable[[Any, Any], jax.Array]


AUTO = "auto"
# K on accelerators. A NADE training step costs ~20 kernels per block; at ~5 µs per launch
# that is ~100 µs per block, against ~6·K·B·H FLOPs per variable of masked-matmul work
# (~0.2 µs per variable at K = 32, B = 100, H = 500 on a 50 TFLOP/s part). K = 32 cuts the
# launches 32-fold while the extra work stays far below the launch cost for B ≤ 1000.
ACCELERATOR_BLOCK_SIZE = 32


def resolve_block_size(
    block_size: int | str, num_inputs: int, accelerator: int = ACCELERATOR_BLOCK_SIZE, platform: str | None = None
) -> int:
    """The number of variables per scan iteration: an int >= 1, or ``"auto"``.

    ``"auto"`` means 1 on CPU and ``accelerator`` on GPU/TPU (``platform`` defaults to
    ``jax.default_backend()``). The result is capped at ``num_inputs``.
    """
    if block_size == AUTO:
        platform = platform or jax.default_backend()
        block_size = 1 if platform == "cpu" else accelerator
    elif isinstance(block_size, bool) or not isinstance(block_size, (int, np.integer)) or block_size < 1:
        raise ValueError(f"block_size must be an integer >= 1 or 'auto', got {block_size!r}")
    return min(int(block_size), num_inputs)


def block_carries(a: jax.Array, x: jax.Array, W: jax.Array) -> jax.Array:
    """The carry before each of a block's K variables, (K, B, H): a + Σ_{j<k} x_j W_j.

    a: (B, H) carry before the block; x: (B, K) the block's inputs; W: (K, H) their rows.
    One strictly-lower-triangular masked matmul, (K, B, K) @ (K, H), instead of K dependent
    updates: on accelerators the block then costs the same few kernels for any K. K = 1
    needs no matmul.
    """
    K = x.shape[1]
    if K == 1:
        return a[None]
    strictly_lower = jnp.tri(K, k=-1, dtype=x.dtype)  # [k, j] = 1 where j < k
    return a[None] + (strictly_lower[:, None, :] * x[None]) @ W


def to_blocks(value: jax.Array, block_size: int, axis: int = 0) -> jax.Array:
    """Splits ``axis`` (length D) into zero-padded blocks: (…, D, …) -> (num_blocks, …, K, …).

    The scans run over the leading num_blocks = ceil(D / K) axis; ``block_validity`` marks
    the padding.
    """
    num_blocks = -(-value.shape[axis] // block_size)
    widths = [(0, 0)] * value.ndim
    widths[axis] = (0, num_blocks * block_size - value.shape[axis])
    value = jnp.pad(value, widths)
    shape = (*value.shape[:axis], num_blocks, block_size, *value.shape[axis + 1 :])
    return jnp.moveaxis(value.reshape(shape), axis, 0)


def block_validity(num_inputs: int, block_size: int, dtype: DTypeLike = jnp.float32) -> jax.Array:
    """(num_blocks, K): 1 for real variables, 0 for the padding that ``to_blocks`` adds."""
    num_blocks = -(-num_inputs // block_size)
    return (jnp.arange(num_blocks * block_size) < num_inputs).astype(dtype).reshape(num_blocks, block_size)


def _take(tree: PyTree, j: jax.Array | int) -> PyTree:
    return jax.tree.map(lambda v: jax.lax.dynamic_index_in_dim(v, j, keepdims=False), tree)


def _forward(
    out_fn: OutFn, delta_fn: DeltaFn, a0: jax.Array, params: PyTree, data: PyTree
) -> tuple[jax.Array, jax.Array]:
    """Returns (outputs, final carry).

    Iteration j first applies block j-1's update and then reads the carry: reading the
    carry before updating it in place would make XLA copy it (B·H values) every block.
    """
    num_blocks = jax.tree.leaves((params, data))[0].shape[0]

    def step(a: jax.Array, block: tuple[jax.Array, PyTree, PyTree]) -> tuple[jax.Array, jax.Array]:
        j, p, d = block
        j_prev = jnp.maximum(j - 1, 0)
        delta = delta_fn(_take(params, j_prev), _take(data, j_prev))
        a = a + jnp.where(j > 0, delta, jnp.zeros_like(delta))
        return a, out_fn(a, p, d)

    a, outputs = jax.lax.scan(step, a0, (jnp.arange(num_blocks), params, data))
    last = num_blocks - 1
    return outputs, a + delta_fn(_take(params, last), _take(data, last))


def _final_carry(delta_fn: DeltaFn, a0: jax.Array, params: PyTree, data: PyTree) -> jax.Array:
    def step(a: jax.Array, block: tuple[PyTree, PyTree]) -> tuple[jax.Array, None]:
        return a + delta_fn(*block), None

    return jax.lax.scan(step, a0, (params, data))[0]


def _leaves_read(fn: Callable[..., jax.Array], *args: PyTree) -> list[bool]:
    """For each leaf of ``args``, whether ``fn``'s output depends on it (a backward
    liveness pass over its jaxpr; equations with sub-jaxprs count as reading all inputs)."""
    closed = jax.make_jaxpr(fn)(*args)
    live = {v for v in closed.jaxpr.outvars if isinstance(v, jax.extend.core.Var)}
    for eqn in reversed(closed.jaxpr.eqns):
        if any(v in live for v in eqn.outvars):
            live.update(v for v in eqn.invars if isinstance(v, jax.extend.core.Var))
    return [v in live for v in closed.jaxpr.invars]


def _reverse(
    out_fn: OutFn, delta_fn: DeltaFn, a_last: jax.Array, params: PyTree, data: PyTree, cotangents: jax.Array
) -> tuple[jax.Array, jax.Array, PyTree]:
    """Walks the blocks backwards; returns (outputs, grad_a0, grad_params).

    Block j's update ``delta_j`` needs the gradient with respect to the carry *after* block
    j: the running sum ``grad_a`` before block j's own contribution is added. Reading that
    sum in the iteration that updates it in place makes XLA copy it (B·H values) every
    block, so iteration j applies block j-1's update vjp to the freshly updated sum instead,
    and the stacked results are shifted back by one block afterwards (the last block's
    update has a zero cotangent). Each vjp is taken only with respect to the parameter
    leaves its function reads, so the loop stacks no zero gradients.
    """
    flat_params, treedef = jax.tree.flatten(params)
    num_blocks = jax.tree.leaves(cotangents)[0].shape[0]
    block_of = lambda tree: jax.tree.map(lambda v: jax.ShapeDtypeStruct(v.shape[1:], v.dtype), tree)
    flat_block, data_block = block_of(flat_params), block_of(data)
    carry = jax.ShapeDtypeStruct(a_last.shape, a_last.dtype)
    out_reads = _leaves_read(
        lambda a, f, d: out_fn(a, jax.tree.unflatten(treedef, f), d), carry, flat_block, data_block
    )
    out_reads = out_reads[1 : 1 + len(flat_params)]
    delta_reads = _leaves_read(lambda f, d: delta_fn(jax.tree.unflatten(treedef, f), d), flat_block, data_block)
    delta_reads = delta_reads[: len(flat_params)]

    def with_leaves(flat: Sequence[jax.Array], reads: Sequence[bool], leaves: Sequence[jax.Array]) -> PyTree:
        """``flat`` with the leaves where ``reads`` is set replaced by ``leaves``."""
        replacements = iter(leaves)
        return jax.tree.unflatten(treedef, [next(replacements) if r else v for r, v in zip(reads, flat, strict=True)])

    def step(
        carry: tuple[jax.Array, jax.Array], block: tuple[jax.Array, PyTree, PyTree, jax.Array]
    ) -> tuple[tuple[jax.Array, jax.Array], tuple[jax.Array, PyTree, PyTree]]:
        a, grad_a = carry
        j, p, d, g = block
        a = a - delta_fn(p, d)
        flat = jax.tree.leaves(p)
        out_leaves = [v for r, v in zip(out_reads, flat, strict=True) if r]
        outputs, vjp_out = jax.vjp(
            lambda a_, leaves: out_fn(a_, with_leaves(flat, out_reads, leaves), d), a, out_leaves
        )
        grad_a_out, grad_out = vjp_out(g)
        grad_a = grad_a + grad_a_out
        # Block j-1's update vjp (at j = 0 the result is never used).
        j_prev = jnp.maximum(j - 1, 0)
        flat_prev, d_prev = jax.tree.leaves(_take(params, j_prev)), _take(data, j_prev)
        delta_leaves = [v for r, v in zip(delta_reads, flat_prev, strict=True) if r]
        _, vjp_delta = jax.vjp(
            lambda leaves: delta_fn(with_leaves(flat_prev, delta_reads, leaves), d_prev), delta_leaves
        )
        (grad_delta_prev,) = vjp_delta(grad_a)
        return (a, grad_a), (outputs, grad_out, grad_delta_prev)

    init = (a_last, jnp.zeros_like(a_last))
    (_, grad_a0), (outputs, grad_out, grad_delta_prev) = jax.lax.scan(
        step, init, (jnp.arange(num_blocks), params, data, cotangents), reverse=True
    )
    grad_out, grad_delta_prev = iter(grad_out), iter(grad_delta_prev)
    flat_grads = []
    for value, out_read, delta_read in zip(flat_params, out_reads, delta_reads, strict=True):
        grad = next(grad_out) if out_read else jnp.zeros_like(value)
        if delta_read:  # row j was computed in iteration j + 1
            shifted = next(grad_delta_prev)
            grad = grad + jnp.concatenate([shifted[1:], jnp.zeros_like(shifted[:1])])
        flat_grads.append(grad)
    return outputs, grad_a0, jax.tree.unflatten(treedef, flat_grads)


@partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def reversible_scan(out_fn: OutFn, delta_fn: DeltaFn, a0: jax.Array, params: PyTree, data: PyTree) -> jax.Array:
    """Runs the blocked recurrence and returns outputs of shape (num_blocks, B, K).

    Args:
      out_fn: block outputs from the block's starting carry; ``(a, p, d) -> (B, K)``.
      delta_fn: the block's additive carry update; ``(p, d) -> (B, H)``.
      a0: initial carry, (B, H).
      params: pytree of differentiable per-block arrays, leading axis num_blocks.
      data: pytree of non-differentiable per-block arrays (the inputs), leading axis
        num_blocks. It receives a zero cotangent.
    """
    return _forward(out_fn, delta_fn, a0, params, data)[0]


def _scan_fwd(
    out_fn: OutFn, delta_fn: DeltaFn, a0: jax.Array, params: PyTree, data: PyTree
) -> tuple[jax.Array, tuple[jax.Array, PyTree, PyTree]]:
    outputs, a_last = _forward(out_fn, delta_fn, a0, params, data)
    return outputs, (a_last, params, data)


def _scan_bwd(
    out_fn: OutFn, delta_fn: DeltaFn, residuals: tuple[jax.Array, PyTree, PyTree], cotangents: jax.Array
) -> tuple[jax.Array, PyTree, PyTree]:
    a_last, params, data = residuals
    _, grad_a0, grad_params = _reverse(out_fn, delta_fn, a_last, params, data, cotangents)
    return grad_a0, grad_params, jax.tree.map(lambda _: None, data)  # None: a symbolic zero


reversible_scan.defvjp(_scan_fwd, _scan_bwd)


@partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def reversible_weighted_sum(
    out_fn: OutFn,
    delta_fn: DeltaFn,
    a0: jax.Array,
    params: PyTree,
    data: PyTree,
    weights: jax.Array,
    final_carry: jax.Array | None = None,
) -> jax.Array:
    """Σ weights · outputs as a scalar; ``weights`` has the outputs' shape (num_blocks, B, K).

    ``final_carry`` (B, H), optional, is ``a0 + Σ_j delta_fn(params_j, data_j)`` when the
    caller can compute it more cheaply than a scan over the blocks (NADE: one matmul). It
    is a hint, treated as a constant: gradients flow through ``a0`` and ``params`` only, so
    it must be consistent with them.
    """
    outputs, _ = _forward(out_fn, delta_fn, a0, params, data)
    return jnp.sum(weights * outputs)


def _sum_fwd(
    out_fn: OutFn,
    delta_fn: DeltaFn,
    a0: jax.Array,
    params: PyTree,
    data: PyTree,
    weights: jax.Array,
    final_carry: jax.Array | None = None,
) -> tuple[jax.Array, tuple[jax.Array, PyTree, PyTree, jax.Array, jax.Array | None]]:
    a_last = _final_carry(delta_fn, a0, params, data) if final_carry is None else final_carry
    outputs, grad_a0, grad_params = _reverse(out_fn, delta_fn, a_last, params, data, weights)
    residuals = (grad_a0, grad_params, data, outputs, final_carry)
    return jnp.sum(weights * outputs), residuals


def _sum_bwd(
    out_fn: OutFn,
    delta_fn: DeltaFn,
    residuals: tuple[jax.Array, PyTree, PyTree, jax.Array, jax.Array | None],
    cotangent: jax.Array,
) -> tuple[jax.Array, PyTree, PyTree, jax.Array, None]:
    grad_a0, grad_params, data, outputs, final_carry = residuals
    scale = lambda g: g * cotangent
    return (
        scale(grad_a0),
        jax.tree.map(scale, grad_params),
        jax.tree.map(lambda _: None, data),  # None: a symbolic zero, so no upstream work
        scale(outputs),
        jax.tree.map(lambda _: None, final_carry),
    )


reversible_weighted_sum.defvjp(_sum_fwd, _sum_bwd)
