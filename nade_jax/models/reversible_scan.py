"""Reversible blocked scan: the O(B·H)-memory engine under every shared-weight NADE.

A NADE pass carries one hidden pre-activation ``a`` of shape (B, H) through D steps and
updates it additively, ``a_next = a + delta(block)``. The steps are grouped into blocks of
K variables, so the scan runs D/K times and each block is matmul-shaped work on (B, K, H).

Autodiff through ``lax.scan`` would stack a (B, H) residual per block. Instead the backward
pass walks the blocks in reverse and recovers each block's starting ``a`` by subtraction,
``a = a_next - delta(block)``, so forward and backward both use O(B·K·H) memory, never
O(B·D·H). Two entry points share the reverse walk:

* ``reversible_scan`` returns every block's output and has a general ``custom_vjp``.
* ``reversible_weighted_sum`` returns the scalar Σ weights·outputs; its forward computes
  the value *and* the gradient in the single reverse walk (the final ``a`` is a plain matmul
  away), so a training step costs one pass over the hidden units instead of two.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Callable

import jax
import jax.numpy as jnp

# out_fn(a (B, H), params_block, data_block) -> outputs (B, K)
OutFn = Callable[[jax.Array, Any, Any], jax.Array]
# delta_fn(params_block, data_block) -> (B, H), independent of a
DeltaFn = Callable[[Any, Any], jax.Array]


def _forward(out_fn, delta_fn, a0, params, data):
    def step(a, block):
        p, d = block
        return a + delta_fn(p, d), out_fn(a, p, d)

    a_last, outputs = jax.lax.scan(step, a0, (params, data))
    return outputs, a_last


def _final_carry(delta_fn, a0, params, data):
    def step(a, block):
        return a + delta_fn(*block), None

    return jax.lax.scan(step, a0, (params, data))[0]


def _reverse(out_fn, delta_fn, a_last, params, data, cotangents):
    """Walks the blocks backwards; returns (outputs, grad_a0, grad_params)."""

    def step(carry, block):
        a, grad_a = carry
        p, d, g = block
        a_prev = a - delta_fn(p, d)
        outputs, vjp_out = jax.vjp(lambda a_, p_: out_fn(a_, p_, d), a_prev, p)
        grad_a_out, grad_p_out = vjp_out(g)
        _, vjp_delta = jax.vjp(lambda p_: delta_fn(p_, d), p)
        (grad_p_delta,) = vjp_delta(grad_a)
        grad_p = jax.tree.map(jnp.add, grad_p_out, grad_p_delta)
        return (a_prev, grad_a + grad_a_out), (outputs, grad_p)

    (_, grad_a0), (outputs, grad_params) = jax.lax.scan(
        step, (a_last, jnp.zeros_like(a_last)), (params, data, cotangents), reverse=True
    )
    return outputs, grad_a0, grad_params


@partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def reversible_scan(out_fn: OutFn, delta_fn: DeltaFn, a0, params, data):
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


def _scan_fwd(out_fn, delta_fn, a0, params, data):
    outputs, a_last = _forward(out_fn, delta_fn, a0, params, data)
    return outputs, (a_last, params, data)


def _scan_bwd(out_fn, delta_fn, residuals, cotangents):
    a_last, params, data = residuals
    _, grad_a0, grad_params = _reverse(out_fn, delta_fn, a_last, params, data, cotangents)
    return grad_a0, grad_params, jax.tree.map(jnp.zeros_like, data)


reversible_scan.defvjp(_scan_fwd, _scan_bwd)


@partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def reversible_weighted_sum(out_fn: OutFn, delta_fn: DeltaFn, a0, params, data, weights):
    """Σ weights · outputs as a scalar; ``weights`` has the outputs' shape (num_blocks, B, K)."""
    outputs, _ = _forward(out_fn, delta_fn, a0, params, data)
    return jnp.sum(weights * outputs)


def _sum_fwd(out_fn, delta_fn, a0, params, data, weights):
    a_last = _final_carry(delta_fn, a0, params, data)
    outputs, grad_a0, grad_params = _reverse(out_fn, delta_fn, a_last, params, data, weights)
    return jnp.sum(weights * outputs), (grad_a0, grad_params, data, weights)


def _sum_bwd(out_fn, delta_fn, residuals, cotangent):
    grad_a0, grad_params, data, weights = residuals
    scale = lambda g: g * cotangent
    return (
        scale(grad_a0),
        jax.tree.map(scale, grad_params),
        jax.tree.map(jnp.zeros_like, data),
        jnp.zeros_like(weights),
    )


reversible_weighted_sum.defvjp(_sum_fwd, _sum_bwd)
