"""Orderless NADE / DeepNADE (Uria, Murray & Larochelle 2014): one deep network that
conditions on any subset S of observed variables, hence an autoregressive model under
every ordering.

The input is the masked data and the mask, [x ⊙ m, m] with m_i = 1 when x_i is observed:

    h_1 = act(c + (x ⊙ m) W_x + m W_m),    h_l = act(h_{l-1} U_l + c_l)  (l = 2 … L),
    p(x_i | x_S) = head(h_L · V[i] + b[i])   for i ∉ S,

with W_x, W_m (D, H_1), V (D, H_L, P) and b (D, P) indexed by the original variable, so the
heads of ``heads.py`` are reused unchanged.

Training (``loss``) draws, per example, k ~ U{0, …, D−1} and a uniform subset S of size k,
and scores every unobserved variable (``masked_nll``). Its expectation is the NLL averaged
over all D! orderings.

Exact evaluation under an ordering o (``log_prob``) is incremental: observing x_{o_d} adds
the rank-one term x_{o_d} W_x[o_d] + W_m[o_d] to the first-layer pre-activation, so each
step recomputes only the upper layers and the one read-out h_L · V[o_d]:
O(Σ_{l≥2} H_{l-1} H_l + H_L P) per step instead of a full pass's
O(D H_1 + Σ_{l≥2} H_{l-1} H_l + D H_L P).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.typing import ArrayLike, DTypeLike

from nade_jax.checks import (
    as_batch,
    as_ordering,
    check_batch,
    check_choice,
    check_hidden_sizes,
    check_inputs,
    check_positive_int,
    is_concrete,
)
from nade_jax.models.base import DensityModel
from nade_jax.models.heads import OUTPUTS, Head, make_head
from nade_jax.models.nade import ACTIVATIONS
from nade_jax.models.reversible_scan import PyTree, block_carries, block_validity, resolve_block_size, to_blocks
from nade_jax.registry import register_model

# Variables per scan step on GPU/TPU: L·B rows per upper-layer matmul (1600 at B = 100)
# and D/L = 49 steps at D = 784; the masked matmul adds L/H_2 (3 % at H_2 = 500) to the work.
ACCELERATOR_BLOCK_SIZE = 16


def random_masks(
    key: jax.Array, batch_size: int, num_inputs: int, dtype: DTypeLike = jnp.float32, rows: jax.Array | None = None
) -> jax.Array:
    """(B, D) masks of the training objective, 1 = observed.

    Per row: k ~ U{0, …, D−1}, then the k variables whose rank in a uniformly random
    permutation is < k, i.e. a uniform subset of size k given k. Row i's draw comes from
    ``fold_in(key, rows[i])`` alone, where ``rows`` (B,) are the rows' indices in the global
    batch (None: 0 … B−1), so a batch split over devices gets the masks of the whole batch.
    """
    rows = jnp.arange(batch_size) if rows is None else rows

    def one_mask(row: jax.Array) -> jax.Array:
        key_k, key_perm = jax.random.split(jax.random.fold_in(key, row))
        return jax.random.permutation(key_perm, num_inputs) < jax.random.randint(key_k, (), 0, num_inputs)

    return jax.vmap(one_mask)(rows).astype(dtype)


@register_model("orderless_nade")
class OrderlessNADE(DensityModel):
    """DeepNADE with a Bernoulli or mixture-of-Gaussians head.

    Args:
      num_inputs: D.
      hidden: (H_1, …, H_L), L >= 1 hidden layer sizes.
      output: "bernoulli" (binary data, P = 1) or "mog" (real data, P = 3 · num_components).
      num_components: C, mixture components per variable ("mog" only).
      activation: hidden nonlinearity, a key of ``nade.ACTIVATIONS``.
      min_scale: floor of the MoG scales.
      block_size: variables per ``lax.scan`` step of ``log_prob``, or ``"auto"``: 1 on CPU,
        ``ACCELERATOR_BLOCK_SIZE`` on GPU/TPU (see ``log_prob``).

    Parameters (all nnx.Param): W_x, W_m (D, H_1) and c (H_1,) for the first layer;
    ``layers``, the nnx.Linear maps H_{l-1} -> H_l; V (D, H_L, P) and b (D, P) for the
    read-outs.
    """

    # Trained over all orderings: the runner reports it per ordering and as ensembles.
    is_orderless = True

    def __init__(
        self,
        num_inputs: int,
        hidden: Sequence[int] = (500, 500),
        output: str = "bernoulli",
        num_components: int = 10,
        *,
        activation: str = "relu",
        min_scale: float = 1e-3,
        block_size: int | str = "auto",
        param_dtype: DTypeLike = jnp.float32,
        init_scale: float | None = None,
        rngs: nnx.Rngs,
    ) -> None:
        self.num_inputs = check_positive_int(num_inputs, "num_inputs")
        self.hidden = check_hidden_sizes(hidden)
        self.output = check_choice(output, "output", OUTPUTS)
        self.activation = check_choice(activation, "activation", ACTIVATIONS)
        self.block_size = resolve_block_size(block_size, self.num_inputs, accelerator=ACCELERATOR_BLOCK_SIZE)
        self.head: Head = make_head(output, num_components, min_scale)
        self.data_kind = "binary" if self.head.binary else "real"

        D, P = self.num_inputs, self.head.num_outputs
        H1, HL = self.hidden[0], self.hidden[-1]

        # init_scale: every weight's std; None is 1/sqrt(fan-in), 0.01 the reference code's N(0, 0.01²).
        def normal(shape: tuple[int, ...], fan_in: int) -> jax.Array:
            draw = jax.random.normal(rngs.params(), shape, param_dtype)
            return draw / math.sqrt(fan_in) if init_scale is None else draw * init_scale

        kernel_init: dict[str, Any] = {} if init_scale is None else {"kernel_init": nnx.initializers.normal(init_scale)}
        self.W_x = nnx.Param(normal((D, H1), 2 * D))
        self.W_m = nnx.Param(normal((D, H1), 2 * D))
        self.c = nnx.Param(jnp.zeros((H1,), param_dtype))
        self.layers = nnx.List(
            [
                nnx.Linear(n_in, n_out, param_dtype=param_dtype, rngs=rngs, **kernel_init)
                for n_in, n_out in itertools.pairwise(self.hidden)
            ]
        )
        self.V = nnx.Param(normal((D, HL, P), HL))
        self.b = nnx.Param(jnp.zeros((D, P), param_dtype))

    # -- helpers -------------------------------------------------------------------------
    def _act(self, value: jax.Array) -> jax.Array:
        return ACTIVATIONS[self.activation](value)

    def _upper(self, pre_activation: jax.Array) -> jax.Array:
        """h_L from the first-layer pre-activation (..., H_1) -> (..., H_L).

        Leading axes are batch axes: on (K, B, H_1) each layer is one
        (K·B, H_{l-1}) @ (H_{l-1}, H_l) matmul.
        """
        hidden = self._act(pre_activation)
        for layer in self.layers:
            hidden = self._act(layer(hidden))
        return hidden

    def _dtype(self) -> jnp.dtype:
        return self.W_x[...].dtype

    def _per_variable(self, ordering: jax.Array | None) -> dict[str, jax.Array]:
        """W_x, W_m (D, H_1), V (D, H_L, P), b (D, P), rows in ordering order."""
        params = {"W_x": self.W_x[...], "W_m": self.W_m[...], "V": self.V[...], "b": self.b[...]}
        if ordering is not None:
            params = {name: value[ordering] for name, value in params.items()}
        return params

    # -- the contract ----------------------------------------------------------------------
    def masked_nll(self, x: jax.Array, mask: jax.Array) -> jax.Array:
        """The training objective for given masks, one full forward pass.

        Args:
          x: (B, D) inputs.
          mask: (B, D) of 0/1, 1 = observed (the set S); at most D − 1 ones per row.
        Returns:
          (B,) D / (D − k) · Σ_{i ∉ S} −log p(x_i | x_S) with k = |S|. The weight is applied
          here, so ``loss`` is the plain batch mean and the expectation of this value over
          the objective's masks is the ordering-averaged NLL.
        """
        x = as_batch(x, self.num_inputs, self._dtype())
        mask = jnp.asarray(mask) if not hasattr(mask, "shape") else mask
        check_batch(mask, self.num_inputs, name="mask")
        if mask.shape[0] != x.shape[0]:
            raise ValueError(f"mask must have the shape of x {x.shape}, got {mask.shape}")
        if is_concrete(mask) and not np.all(np.isin(np.asarray(mask), (0, 1))):
            raise ValueError("mask must hold only 0/1 values (1 = observed)")
        mask = mask.astype(x.dtype)
        pre = self.c[...] + (x * mask) @ self.W_x[...] + mask @ self.W_m[...]
        outputs = jnp.einsum("bh,dhp->bdp", self._upper(pre), self.V[...]) + self.b[...]  # (B, D, P)
        nll = -jnp.sum((1 - mask) * self.head.log_prob(outputs, x), axis=1)
        D = self.num_inputs
        # max(·, 1) only guards a fully observed row, whose sum is 0 anyway.
        return nll * D / jnp.maximum(D - mask.sum(axis=1), 1)

    def loss(
        self,
        x: jax.Array,
        key: jax.Array | None = None,
        ordering: jax.Array | None = None,
        rows: jax.Array | None = None,
    ) -> jax.Array:
        """Scalar batch mean of ``masked_nll`` over masks from ``random_masks(key, B, D, rows=rows)``.

        ``rows`` (B,): the indices of x's rows in the global batch (None: x is the whole
        batch); each example's mask depends only on (key, its index), so the step gives
        the same masks on any number of devices. ``ordering`` is accepted for the shared
        contract and ignored: training is ordering-agnostic.
        """
        del ordering
        if key is None:
            raise ValueError("key must be a jax.random key: the orderless loss draws random masks")
        x = as_batch(x, self.num_inputs, self._dtype())
        mask = random_masks(key, x.shape[0], self.num_inputs, x.dtype, rows=rows)
        return self.masked_nll(x, mask).mean()

    def log_prob(self, x: jax.Array, ordering: jax.Array | None = None) -> jax.Array:
        """Exact log p(x) under ``ordering``, incrementally.

        Nearly all the work is the upper layers' (rows, H_{l-1}) @ (H_{l-1}, H_l) matmuls,
        so the formulation is chosen for their row count and for cache use:

        * ``block_size`` 1 (CPU): one ``lax.scan`` step per variable on the (B, H_1) carry;
          vmapped over K orderings (``orderings.log_prob_per_ordering``) the matmuls run
          on (K·B, H) rows, which stay in cache.
        * ``block_size`` L > 1 (accelerators): L variables per step, their first-layer
          pre-activations from one masked matmul, the upper layers on (L·B, H) rows: D/L
          launches of a few large kernels instead of D of small ones.

        Args:
          x: (B, D) inputs.
          ordering: (D,) int permutation of range(D); None means the identity.
        Returns:
          (B,) log-probabilities (log-densities for the MoG head).
        """
        return self.log_prob_terms(x, ordering).sum(axis=1)

    def log_prob_terms(self, x: jax.Array, ordering: jax.Array | None = None) -> jax.Array:
        """(B, D) log p(x_{o_d} | x_{o_<d}) in ordering order, the terms ``log_prob`` sums
        (the incremental pass it documents)."""
        x = as_batch(x, self.num_inputs, self._dtype())
        ordering = as_ordering(ordering, self.num_inputs)
        if self.block_size == 1:
            return self._log_prob_per_variable(x, ordering)
        return self._log_prob_blocked(x, ordering)

    def _log_prob_per_variable(self, x: jax.Array, ordering: jax.Array | None) -> jax.Array:
        """The log-probability terms with one scan step per variable: (B, D) -> (B, D)."""
        params = self._per_variable(ordering)
        x_steps = (x if ordering is None else x[:, ordering]).T  # (D, B)
        # Step d first adds variable d-1's rank-one term (zero at d = 0), then reads the
        # carry: reading it before the in-place update would make XLA copy it every step.
        previous = lambda value: jnp.concatenate([jnp.zeros_like(value[:1]), value[:-1]])
        inputs = (
            params["V"],
            params["b"],
            x_steps,
            previous(params["W_x"]),
            previous(params["W_m"]),
            previous(x_steps),
        )

        def step(a: jax.Array, inputs: tuple[jax.Array, ...]) -> tuple[jax.Array, jax.Array]:
            # a (B, H_1): the pre-activation with x_{o_<d} observed
            V_d, b_d, x_d, W_x_prev, W_m_prev, x_prev = inputs
            a = a + x_prev[:, None] * W_x_prev + W_m_prev
            outputs = self._upper(a) @ V_d + b_d  # (B, P): the one read-out needed
            return a, self.head.log_prob(outputs, x_d)

        a0 = jnp.broadcast_to(self.c[...], (x.shape[0], self.hidden[0])).astype(x.dtype)
        _, log_probs = jax.lax.scan(step, a0, inputs)  # (D, B)
        return log_probs.T

    def _log_prob_blocked(self, x: jax.Array, ordering: jax.Array | None) -> jax.Array:
        """The log-probability terms with L = block_size variables per scan step: (B, D) -> (B, D).

        A block's L first-layer pre-activations come from one strictly-lower-triangular
        masked matmul (``block_carries``), the upper layers run on (L·B, H) rows, and only
        the L needed read-outs are formed. D is padded to a multiple of L; padded variables
        have zero parameters and are masked out.
        """
        L = self.block_size
        params = jax.tree.map(lambda value: to_blocks(value, L), self._per_variable(ordering))
        x_blocks = to_blocks(x if ordering is None else x[:, ordering], L, axis=1)  # (nb, B, L)
        valid = block_validity(self.num_inputs, L, x.dtype)
        strictly_lower = jnp.tri(L, k=-1, dtype=x.dtype)  # [k, j] = 1 where j < k

        def step(a: jax.Array, block: tuple[PyTree, jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array]:
            # a (B, H_1): the pre-activation with every earlier block observed
            p, xb, vb = block  # xb (B, L)
            # Block-position-major (L, B, ·) layout: the read-out batches over a leading L
            # and needs no transpose of the (L, B, H_L) hidden states.
            pre = block_carries(a, xb, p["W_x"]) + (strictly_lower @ p["W_m"])[:, None, :]  # (L, B, H_1)
            outputs = self._upper(pre) @ p["V"] + p["b"][:, None, :]  # (L, B, P)
            log_probs = self.head.log_prob(outputs, xb.T) * vb[:, None]  # (L, B), zero where padded
            return a + xb @ p["W_x"] + p["W_m"].sum(axis=0), log_probs

        a0 = jnp.broadcast_to(self.c[...], (x.shape[0], self.hidden[0])).astype(x.dtype)
        _, log_probs = jax.lax.scan(step, a0, (params, x_blocks, valid))  # (nb, L, B)
        return log_probs.reshape(-1, x.shape[0]).T[:, : self.num_inputs]

    def sample(self, key: jax.Array, num_samples: int, ordering: jax.Array | None = None) -> jax.Array:
        """Draws (num_samples, D) samples from the distribution ``log_prob`` scores.

        One ``lax.scan`` over the D steps with the same rank-one first-layer updates; the
        upper layers run on (num_samples, H) rows. Binary heads draw x = 1 when
        log u < log p(x = 1 | ·), with all log-uniforms drawn before the loop, which keeps
        random-number generation out of the scan; other heads use a per-step key.
        """
        num_samples = check_positive_int(num_samples, "num_samples")
        ordering = as_ordering(ordering, self.num_inputs)
        dtype = self._dtype()
        binary = self.head.binary

        def step(a: jax.Array, inputs: tuple[dict[str, jax.Array], jax.Array]) -> tuple[jax.Array, jax.Array]:
            p, noise = inputs
            outputs = self._upper(a) @ p["V"] + p["b"]  # (n, P)
            if binary:
                value = (noise < self.head.log_prob(outputs, jnp.ones((num_samples,), dtype))).astype(dtype)
            else:
                value = self.head.sample(noise, outputs)  # (n,)
            return a + value[:, None] * p["W_x"] + p["W_m"], value

        a0 = jnp.broadcast_to(self.c[...], (num_samples, self.hidden[0])).astype(dtype)
        if binary:
            noise = jnp.log(jax.random.uniform(key, (self.num_inputs, num_samples), dtype))
        else:
            noise = jax.random.split(key, self.num_inputs)
        _, values = jax.lax.scan(step, a0, (self._per_variable(ordering), noise))  # (D, n), ordering order
        if ordering is None:
            return values.T
        return jnp.zeros((num_samples, self.num_inputs), dtype).at[:, ordering].set(values.T)

    def init_from_data(self, x: ArrayLike) -> None:
        """Sets the output biases b from data marginals (see the head's ``init_bias``)."""
        x = check_inputs(x, self.num_inputs, binary=self.head.binary)
        self.b[...] = jnp.asarray(self.head.init_bias(x), self.b[...].dtype)
