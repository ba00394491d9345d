"""NADE (Larochelle & Murray 2011): one weight matrix shared by all D conditionals.

Along an ordering o, with a_1 = c and a_{d+1} = a_d + W[o_d] x_{o_d}:

    h_d = act(ρ_d a_d),    p(x_{o_d} | x_{o_<d}) = head(h_d · V[o_d] + b[o_d])

Every parameter is indexed by the original variable, so one set of parameters defines a
valid distribution under every ordering. ρ (the RNADE rescaling, per step d) is used only
when ``rescale_activation`` is set.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar, cast

import jax
import jax.numpy as jnp
from flax import nnx
from jax.typing import ArrayLike, DTypeLike

from nade_jax.checks import (
    as_batch,
    as_ordering,
    check_choice,
    check_inputs,
    check_positive_int,
)
from nade_jax.models.base import DataKind, DensityModel, check_values
from nade_jax.models.heads import BernoulliHead, Head
from nade_jax.models.reversible_scan import (
    PyTree,
    block_carries,
    block_validity,
    resolve_block_size,
    reversible_scan,
    reversible_weighted_sum,
    to_blocks,
)
from nade_jax.registry import register_model

ACTIVATIONS = {
    "sigmoid": jax.nn.sigmoid,
    "relu": jax.nn.relu,
    "tanh": jnp.tanh,
    "softplus": jax.nn.softplus,
}


def _readout(activation: str, pre: jax.Array, V: jax.Array) -> jax.Array:
    """The hidden read-out without its bias: act(pre) (B, H) @ V (H, P) -> (B, P).

    For sigmoid units it uses σ(z) = (1 + tanh(z/2)) / 2: XLA's tanh is cheaper than its
    logistic (no exp, one division), and the constant half, V's column sums / 2, is folded
    into the bias by ``SharedWeightNADE.step_params``. The backward pass then needs only
    tanh' = 1 - tanh², from the value already computed.
    """
    if activation == "sigmoid":
        return 0.5 * (jnp.tanh(0.5 * pre) @ V)
    return ACTIVATIONS[activation](pre) @ V


@dataclasses.dataclass(frozen=True)
class NADEStep:
    """One step of the shared recurrence as pure functions of per-step parameters.

    ``outputs`` is *the* conditional: log_prob, loss (through the reversible engine) and
    sample (through a plain scan) all call it, and the head turns its result into a
    log-probability or a sample. ``update`` is the step's additive change of the hidden
    pre-activation. The step is hashable static configuration (a frozen dataclass): it is a
    static argument of the engine's ``custom_vjp`` and of jit caches, so it must hold no
    arrays and read no module state; every parameter arrives through ``p``, built by
    ``SharedWeightNADE.step_params``.

    Shapes: a (B, H) the pre-activation *before* the step; in ``outputs``, ``p`` holds one
    step's leaves of ``step_params`` (W (H,), V (H, P), bias (P,), optional rho ()); in
    ``update``, K consecutive steps' leaves (W (K, H)) and their values x (B, K).
    """

    head: Head
    activation: str

    def outputs(self, a: jax.Array, p: dict[str, jax.Array]) -> jax.Array:
        """The head's inputs (B, P) for the step's variable given the earlier ones."""
        pre = a * p["rho"] if "rho" in p else a
        return _readout(self.activation, pre, p["V"]) + p["bias"]

    def update(self, p: dict[str, jax.Array], x: jax.Array) -> jax.Array:
        """The change of the pre-activation (B, H) once the variable x (B, K) of K steps is
        observed; p holds those K steps' leaves (W (K, H))."""
        return x @ p["W"]

    def carries(self, a: jax.Array, p: dict[str, Any], x: jax.Array) -> jax.Array:
        """The pre-activation before each of K consecutive steps, (K, B, H): a + Σ_{j<k}
        update_j, with p those K steps' leaves and x (B, K) their values. For the linear
        update x @ W it is one strictly-lower-triangular masked matmul (``block_carries``);
        a variant with another ``update`` gets the prefix sum of its per-step updates."""
        if type(self).update is NADEStep.update:
            return block_carries(a, x, p["W"])
        K = x.shape[1]
        updates = jnp.stack([self.update(_rows(p, j), x[:, j : j + 1]) for j in range(K - 1)])  # (K-1, B, H)
        return a[None] + jnp.concatenate([jnp.zeros_like(a)[None], jnp.cumsum(updates, axis=0)])

    def total_update(self, p: dict[str, Any], x: jax.Array) -> jax.Array | None:
        """Σ over all D steps of ``update``, x (B, D), p with leading D: one matmul. Returning
        None makes the engine compute it by a scan instead."""
        return x @ p["W"]


@dataclasses.dataclass(frozen=True)
class _BlockLogProb:
    """The engine's out_fn: log-probabilities (B, K) of one block of K steps, zero where
    padded. K = 1 (the CPU default) touches one cache-resident (B, H) slab per step; K > 1
    (accelerators) computes the K carries at once (``NADEStep.carries``) so that a block
    costs the same few kernels for any K."""

    step: NADEStep

    def __call__(self, a: jax.Array, params: PyTree, data: PyTree) -> jax.Array:
        x = data["x"]
        if x.shape[1] == 1:  # the CPU default: one (B, H) slab, no stacking
            outputs = self.step.outputs(a, jax.tree.map(lambda v: v[0], params))
            return self.step.head.log_prob(outputs, x[:, 0])[:, None] * data["valid"]
        pre = self.step.carries(a, params, x)  # (K, B, H): one masked matmul, not K dependent updates
        outputs = jax.vmap(self.step.outputs)(pre, params)  # (K, B, P)
        return jax.vmap(self.step.head.log_prob)(outputs, x.T).T * data["valid"]


@dataclasses.dataclass(frozen=True)
class _BlockUpdate:
    """The engine's delta_fn: the block's additive update (B, H)."""

    step: NADEStep

    def __call__(self, params: PyTree, data: PyTree) -> jax.Array:
        return self.step.update(params, data["x"])


def _rows(params: PyTree, k: int) -> PyTree:
    """Step k of a block's leaves, keeping a length-1 step axis: (K, …) -> (1, …)."""
    return jax.tree.map(lambda v: v[k : k + 1], params)


@jax.custom_vjp
def _permute_rows(value: jax.Array, ordering: jax.Array) -> jax.Array:
    """value[ordering] for a permutation ``ordering``; its vjp is a gather by the inverse
    permutation rather than autodiff's scatter-add."""
    return value[ordering]


def _permute_rows_fwd(value: jax.Array, ordering: jax.Array) -> tuple[jax.Array, jax.Array]:
    return value[ordering], ordering


def _permute_rows_bwd(ordering: jax.Array, cotangent: jax.Array) -> tuple[jax.Array, None]:
    inverse = jnp.zeros_like(ordering).at[ordering].set(jnp.arange(ordering.shape[0], dtype=ordering.dtype))
    return cotangent[inverse], None


_permute_rows.defvjp(_permute_rows_fwd, _permute_rows_bwd)


class SharedWeightNADE(DensityModel):
    """The shared recurrence and its exact O(B·D·H) likelihood; subclasses pick the head.

    Parameters (indexed by original variable i): W (D, H), c (H,), V (D, H, P), b (D, P),
    and rho (D,) per step when ``rescale_activation``.

    ``block_size`` is the number of variables handled per scan iteration, or ``"auto"``
    (the default): 1 on CPU, where every step then works on one cache-resident (B, H) slab,
    and ``reversible_scan.ACCELERATOR_BLOCK_SIZE`` on GPU/TPU (benchmarks/RESULTS.md).

    **Writing a variant.** A variant may override:

    * ``step_params(ordering)``: the per-step parameters, a dict of arrays with leading
      axis D in ordering order, computed from the module's parameters *outside* the scan
      (add leaves, reparameterise W or V, …). Keep the keys the step reads.
    * ``step_class``: a subclass of ``NADEStep`` (a frozen dataclass) whose ``outputs``
      (the conditional, shared by log_prob, loss and sample) and ``update`` (the input's
      contribution to the pre-activation) read the leaves ``step_params`` provides.
    * the head (a constructor argument), ``init_from_data``.

    A variant must not read module state (``self.…``) inside the step functions: they run
    inside ``lax.scan`` under the engine's ``custom_vjp``, where the step is a static,
    hashable argument; everything differentiable goes through ``step_params``. ``update``
    must not depend on the pre-activation (the engine inverts each step by subtraction).
    To prototype a variant that breaks these rules, set ``engine = "autodiff"`` on the
    class: log_prob and loss then use ``reference_log_prob``, plain autodiff through a
    per-step ``lax.scan`` (O(B·D·H) memory in the backward pass, slower, always correct).
    """

    step_class: ClassVar[type[NADEStep]] = NADEStep
    engine: ClassVar[str] = "reversible"  # or "autodiff": the reference path, for prototypes

    def __init__(
        self,
        num_inputs: int,
        num_hidden: int,
        head: Head,
        *,
        activation: str = "sigmoid",
        rescale_activation: bool = False,
        block_size: int | str = "auto",
        param_dtype: DTypeLike = jnp.float32,
        init_scale: float | None = None,
        rngs: nnx.Rngs,
    ) -> None:
        self.num_inputs = check_positive_int(num_inputs, "num_inputs")
        self.num_hidden = check_positive_int(num_hidden, "num_hidden")
        self.block_size = resolve_block_size(block_size, self.num_inputs)
        self.activation = check_choice(activation, "activation", ACTIVATIONS)
        self.head = head
        self.data_kind = cast(DataKind, head.data_kind)  # the head names one of DATA_KINDS
        self.num_categories = head.num_categories
        self.step = self.step_class(head, self.activation)
        D, H, P = self.num_inputs, self.num_hidden, head.num_outputs

        # init_scale: the weights' std; None is 1/sqrt(fan-in), 0.01 the reference code's N(0, 0.01²).
        def normal(shape: tuple[int, ...], fan_in: int) -> jax.Array:
            draw = jax.random.normal(rngs.params(), shape, param_dtype)
            return draw / math.sqrt(fan_in) if init_scale is None else draw * init_scale

        self.W = nnx.Param(normal(self._input_shape(), D))
        self.c = nnx.Param(jnp.zeros((H,), param_dtype))
        self.V = nnx.Param(normal((D, H, P), H))
        self.b = nnx.Param(jnp.zeros((D, P), param_dtype))
        self.rho = nnx.Param(jnp.ones((D,), param_dtype)) if rescale_activation else None

    def _input_shape(self) -> tuple[int, ...]:
        """The shape of W: (D, H), one weight vector per (real or binary) input."""
        return (self.num_inputs, self.num_hidden)

    def _dtype(self) -> jnp.dtype:
        return self.c[...].dtype

    # -- the extension hook ----------------------------------------------------------------
    def step_params(self, ordering: jax.Array | None) -> dict[str, jax.Array]:
        """Per-step parameters in ordering order, each with leading axis D.

        W (D, H) (or (D, Q, H) for categorical inputs), V (D, H, P), bias (D, P) (b, plus
        V's column sums / 2 for sigmoid units: see ``_readout``) and, with
        ``rescale_activation``, rho (D,) (already per step, so not permuted). Rows are
        permuted with a gather whose vjp is a gather too (``_permute_rows``).
        """
        W, V, b = self.W[...], self.V[...], self.b[...]
        if ordering is not None:
            W, V, b = (_permute_rows(value, ordering) for value in (W, V, b))
        bias = b + 0.5 * V.sum(axis=1) if self.activation == "sigmoid" else b
        params = {"W": W, "V": V, "bias": bias}
        if self.rho is not None:
            params["rho"] = self.rho[...]
        return params

    def _initial_carry(self, batch_size: int) -> jax.Array:
        return jnp.broadcast_to(self.c[...], (batch_size, self.num_hidden)).astype(self._dtype())

    def _blocks(
        self, x: jax.Array, ordering: jax.Array | None
    ) -> tuple[jax.Array, PyTree, PyTree, dict[str, jax.Array], jax.Array]:
        """(a0, params, data, per-step params, ordered x): the padded blocks of D/K steps."""
        K = self.block_size
        x_ordered = x if ordering is None else x[:, ordering]
        per_step = self.step_params(ordering)
        params = jax.tree.map(lambda value: to_blocks(value, K), per_step)
        data = {"x": to_blocks(x_ordered, K, axis=1), "valid": block_validity(self.num_inputs, K, x.dtype)}
        return self._initial_carry(x.shape[0]), params, data, per_step, x_ordered

    def reference_log_prob(self, x: jax.Array, ordering: jax.Array | None = None) -> jax.Array:
        """log p(x) (B,) by plain autodiff through a per-step ``lax.scan``: the slow path for
        prototyping (it stacks a (B, H) residual per step in the backward pass). Uses the
        same ``step_params`` and step functions as the engine."""
        return self._reference_terms(x, ordering).sum(axis=1)

    def _reference_terms(self, x: jax.Array, ordering: jax.Array | None = None) -> jax.Array:
        """(B, D) the per-step terms of ``reference_log_prob``, in ordering order."""
        x = as_batch(x, self.num_inputs, self._dtype())
        ordering = as_ordering(ordering, self.num_inputs)
        x_ordered = x if ordering is None else x[:, ordering]

        def scan_step(a: jax.Array, inputs: tuple[dict[str, jax.Array], jax.Array]) -> tuple[jax.Array, jax.Array]:
            p, x_d = inputs
            log_p = self.step.head.log_prob(self.step.outputs(a, p), x_d)
            return a + self.step.update(jax.tree.map(lambda v: v[None], p), x_d[:, None]), log_p

        per_step = self.step_params(ordering)
        _, log_probs = jax.lax.scan(scan_step, self._initial_carry(x.shape[0]), (per_step, x_ordered.T))
        return log_probs.T  # (B, D) in ordering order

    # -- the contract ----------------------------------------------------------------------
    def log_prob(self, x: jax.Array, ordering: jax.Array | None = None) -> jax.Array:
        """Exact log p(x) under ``ordering``.

        Args:
          x: (B, D) inputs.
          ordering: (D,) int permutation of range(D); None means the identity.
        Returns:
          (B,) log-probabilities (log-densities for real-valued heads).
        """
        return self.log_prob_terms(x, ordering).sum(axis=1)

    def log_prob_terms(self, x: jax.Array, ordering: jax.Array | None = None) -> jax.Array:
        """(B, D) log p(x_{o_d} | x_{o_<d}) in ordering order: the engine's per-step outputs
        before ``log_prob`` sums them."""
        if self.engine == "autodiff":
            return self._reference_terms(x, ordering)
        x = as_batch(x, self.num_inputs, self._dtype())
        a0, params, data, _, _ = self._blocks(x, as_ordering(ordering, self.num_inputs))
        per_variable = reversible_scan(_BlockLogProb(self.step), _BlockUpdate(self.step), a0, params, data)
        num_blocks, batch, block = per_variable.shape  # padded steps are zero
        return per_variable.transpose(1, 0, 2).reshape(batch, num_blocks * block)[:, : self.num_inputs]

    def loss(self, x: jax.Array, key: jax.Array | None = None, ordering: jax.Array | None = None) -> jax.Array:
        """Mean NLL of x (B, D) under ``ordering``; a scalar.

        ``key`` is unused (fixed-order training is deterministic) and kept for the shared
        contract. Its gradient comes from a single reverse pass (``reversible_weighted_sum``)
        that starts from the final pre-activation (``NADEStep.total_update``, one matmul).
        """
        del key
        if self.engine == "autodiff":
            return -jnp.mean(self.reference_log_prob(x, ordering))
        x = as_batch(x, self.num_inputs, self._dtype())
        a0, params, data, per_step, x_ordered = self._blocks(x, as_ordering(ordering, self.num_inputs))
        weights = jnp.broadcast_to(data["valid"][:, None, :], data["x"].shape) / x.shape[0]
        total = self.step.total_update(per_step, x_ordered)
        final_carry = None if total is None else a0 + total
        block_fn, update_fn = _BlockLogProb(self.step), _BlockUpdate(self.step)
        return -reversible_weighted_sum(block_fn, update_fn, a0, params, data, weights, final_carry)

    def sample(self, key: jax.Array, num_samples: int, ordering: jax.Array | None = None) -> jax.Array:
        """Draws (num_samples, D) samples from the distribution that ``log_prob`` scores.

        One compiled ``lax.scan`` over the D steps: O(D·H) work per sample, through the same
        ``step.outputs`` as log_prob. The head's noise for all D steps is drawn before the
        loop: that keeps random-number generation (a Threefry loop per call) out of the
        scan, whose body is then small enough for XLA:CPU to run its kernels back to back
        rather than through its task graph.
        """
        num_samples = check_positive_int(num_samples, "num_samples")
        ordering = as_ordering(ordering, self.num_inputs)
        dtype, D = self._dtype(), self.num_inputs

        def scan_step(a: jax.Array, inputs: tuple[dict[str, jax.Array], Any]) -> tuple[jax.Array, jax.Array]:
            p, noise = inputs
            value = self.step.head.sample_from_noise(self.step.outputs(a, p), noise)  # (n,)
            return a + self.step.update(jax.tree.map(lambda v: v[None], p), value[:, None]), value

        noise = self.step.head.noise(key, (D, num_samples), dtype)
        _, values = jax.lax.scan(scan_step, self._initial_carry(num_samples), (self.step_params(ordering), noise))
        if ordering is None:  # values: (D, n) in ordering order
            return values.T
        return jnp.zeros((num_samples, D), dtype).at[:, ordering].set(values.T)

    def init_from_data(self, x: ArrayLike) -> None:
        """Sets the output biases from data marginals (see the head's ``init_bias``)."""
        x = check_inputs(x, self.num_inputs, binary=self.head.binary)
        check_values(x, self.data_kind, self.num_categories)
        self.b[...] = jnp.asarray(self.head.init_bias(x), self.b[...].dtype)


@register_model("nade")
class BinaryNADE(SharedWeightNADE):
    """NADE over binary vectors: Bernoulli conditionals, sigmoid hidden units by default."""

    def __init__(
        self,
        num_inputs: int,
        num_hidden: int,
        *,
        activation: str = "sigmoid",
        block_size: int | str = "auto",
        param_dtype: DTypeLike = jnp.float32,
        init_scale: float | None = None,
        rngs: nnx.Rngs,
    ) -> None:
        super().__init__(
            num_inputs,
            num_hidden,
            BernoulliHead(),
            activation=activation,
            block_size=block_size,
            param_dtype=param_dtype,
            init_scale=init_scale,
            rngs=rngs,
        )
