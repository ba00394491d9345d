"""NADE (Larochelle & Murray 2011): one weight matrix shared by all D conditionals.

Along an ordering o, with a_1 = c and a_{d+1} = a_d + W[o_d] x_{o_d}:

    h_d = act(ρ_d a_d),    p(x_{o_d} | x_{o_<d}) = head(h_d · V[o_d] + b[o_d])

Every parameter is indexed by the original variable, so one set of parameters defines a
valid distribution under every ordering. ρ (the RNADE rescaling, per step d) is used only
when ``rescale_activation`` is set.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
from flax import nnx

from nade_jax.models.base import DensityModel
from nade_jax.models.heads import BernoulliHead
from nade_jax.models.reversible_scan import (
    block_carries,
    block_validity,
    resolve_block_size,
    reversible_scan,
    reversible_weighted_sum,
    to_blocks,
)
from nade_jax.validation import (
    as_batch,
    as_ordering,
    check_choice,
    check_inputs,
    check_positive_int,
)

ACTIVATIONS = {
    "sigmoid": jax.nn.sigmoid,
    "relu": jax.nn.relu,
    "tanh": jnp.tanh,
    "softplus": jax.nn.softplus,
}


def _readout(activation, pre, V):
    """The hidden read-out without its bias: act(pre) (B, H) @ V (H, P) -> (B, P).

    For sigmoid units it uses σ(z) = (1 + tanh(z/2)) / 2: XLA's tanh is cheaper than its
    logistic (no exp, one division), and the constant half, V's column sums / 2, is folded
    into the bias by ``SharedWeightNADE._per_variable``. The backward pass then needs only
    tanh' = 1 - tanh², from the value already computed.
    """
    if activation == "sigmoid":
        return 0.5 * (jnp.tanh(0.5 * pre) @ V)
    return ACTIVATIONS[activation](pre) @ V


def _block_log_prob(head, activation, a, params, data):
    """Log-probabilities of one block of K variables.

    a: (B, H) pre-activation before the block; params: W (K, H), V (K, H, P), bias (K, P),
    optionally rho (K,); data: x (B, K), valid (K,). Returns (B, K), zero where not valid.
    The K pre-activations come from one masked matmul (``block_carries``); at K = 1, the
    CPU default, the step works on one cache-resident (B, H) slab.
    """
    x = data["x"]
    pre = block_carries(a, x, params["W"])  # (K, B, H)
    if "rho" in params:
        pre = pre * params["rho"][:, None, None]
    readout = _readout(activation, pre, params["V"]) + params["bias"][:, None, :]  # (K, B, P)
    return head.log_prob(readout, x.T).T * data["valid"]


def _block_delta(params, data):
    """The block's additive update of the pre-activation: x (B, K) @ W (K, H) -> (B, H)."""
    return data["x"] @ params["W"]


@jax.custom_vjp
def _permute_rows(value, ordering):
    """value[ordering] for a permutation ``ordering``; its vjp is a gather by the inverse
    permutation rather than autodiff's scatter-add."""
    return value[ordering]


def _permute_rows_fwd(value, ordering):
    return value[ordering], ordering


def _permute_rows_bwd(ordering, cotangent):
    inverse = jnp.zeros_like(ordering).at[ordering].set(jnp.arange(ordering.shape[0], dtype=ordering.dtype))
    return cotangent[inverse], None


_permute_rows.defvjp(_permute_rows_fwd, _permute_rows_bwd)


class SharedWeightNADE(DensityModel):
    """The shared recurrence and exact O(B·D·H) likelihood; subclasses pick the head.

    Parameters (indexed by original variable i): W (D, H), c (H,), V (D, H, P), b (D, P),
    and rho (D,) per step when ``rescale_activation``.

    ``block_size`` is the number of variables handled per scan iteration, or ``"auto"``
    (the default): 1 on CPU, where every step then works on one cache-resident (B, H) slab,
    and ``reversible_scan.ACCELERATOR_BLOCK_SIZE`` on GPU/TPU (benchmarks/RESULTS.md).
    """

    def __init__(
        self,
        num_inputs: int,
        num_hidden: int,
        head,
        *,
        activation: str = "sigmoid",
        rescale_activation: bool = False,
        block_size: int | str = "auto",
        param_dtype=jnp.float32,
        rngs: nnx.Rngs,
    ):
        self.num_inputs = check_positive_int(num_inputs, "num_inputs")
        self.num_hidden = check_positive_int(num_hidden, "num_hidden")
        self.block_size = resolve_block_size(block_size, self.num_inputs)
        self.activation = check_choice(activation, "activation", ACTIVATIONS)
        self.head = head
        self.data_kind = "binary" if head.binary else "real"
        D, H, P = self.num_inputs, self.num_hidden, head.num_outputs
        self.W = nnx.Param(jax.random.normal(rngs.params(), (D, H), param_dtype) / math.sqrt(D))
        self.c = nnx.Param(jnp.zeros((H,), param_dtype))
        self.V = nnx.Param(jax.random.normal(rngs.params(), (D, H, P), param_dtype) / math.sqrt(H))
        self.b = nnx.Param(jnp.zeros((D, P), param_dtype))
        self.rho = nnx.Param(jnp.ones((D,), param_dtype)) if rescale_activation else None

    # -- helpers -------------------------------------------------------------------------
    def _per_variable(self, ordering):
        """Per-step parameters in ordering order: W (D, H), V (D, H, P) and the read-out
        bias (D, P) (b, plus V's column sums / 2 for sigmoid units: see ``_readout``);
        per-step rho (D,) is already in step order."""
        W, V, b = self.W[...], self.V[...], self.b[...]
        if ordering is not None:
            W, V, b = (_permute_rows(value, ordering) for value in (W, V, b))
        bias = b + 0.5 * V.sum(axis=1) if self.activation == "sigmoid" else b
        params = {"W": W, "V": V, "bias": bias}
        if self.rho is not None:
            params["rho"] = self.rho[...]
        return params

    def _blocks(self, x, ordering):
        """Splits x (B, D) and parameters into D/K padded blocks for the reversible scan."""
        K = self.block_size
        x_ordered = x if ordering is None else x[:, ordering]
        params = jax.tree.map(lambda value: to_blocks(value, K), self._per_variable(ordering))
        valid = block_validity(self.num_inputs, K, x.dtype)
        data = {"x": to_blocks(x_ordered, K, axis=1), "valid": valid}
        a0 = jnp.broadcast_to(self.c[...], (x.shape[0], self.num_hidden)).astype(x.dtype)
        return a0, params, data

    # -- the contract ----------------------------------------------------------------------
    def log_prob(self, x: jax.Array, ordering: jax.Array | None = None) -> jax.Array:
        """Exact log p(x) under ``ordering``.

        Args:
          x: (B, D) inputs.
          ordering: (D,) int permutation of range(D); None means the identity.
        Returns:
          (B,) log-probabilities (log-densities for real-valued heads).
        """
        x = as_batch(x, self.num_inputs, self.W[...].dtype)
        a0, params, data = self._blocks(x, as_ordering(ordering, self.num_inputs))
        block_fn = functools.partial(_block_log_prob, self.head, self.activation)
        per_variable = reversible_scan(block_fn, _block_delta, a0, params, data)  # (nb, B, K)
        return per_variable.sum(axis=(0, 2))

    def loss(self, x: jax.Array, key: jax.Array | None = None, ordering: jax.Array | None = None) -> jax.Array:
        """Mean NLL of x (B, D) under ``ordering``; a scalar.

        ``key`` is unused (fixed-order training is deterministic) and kept for the shared
        contract. Its gradient comes from a single reverse pass (``reversible_weighted_sum``)
        that starts from the final pre-activation c + x @ W, which does not depend on the
        ordering.
        """
        del key
        x = as_batch(x, self.num_inputs, self.W[...].dtype)
        a0, params, data = self._blocks(x, as_ordering(ordering, self.num_inputs))
        block_fn = functools.partial(_block_log_prob, self.head, self.activation)
        weights = jnp.broadcast_to(data["valid"][:, None, :], data["x"].shape) / x.shape[0]
        final_carry = a0 + x @ self.W[...]
        return -reversible_weighted_sum(block_fn, _block_delta, a0, params, data, weights, final_carry)

    def sample(self, key: jax.Array, num_samples: int, ordering: jax.Array | None = None) -> jax.Array:
        """Draws (num_samples, D) samples from the distribution that ``log_prob`` scores.

        One compiled ``lax.scan`` over the D steps: O(D·H) work per sample. Binary heads
        draw x = 1 when log u < log p(x = 1 | h), with the log-uniforms drawn before the
        loop: that keeps random-number generation (a Threefry loop per call) out of the
        scan, whose body is then small enough for XLA:CPU to run its kernels back to back
        rather than through its task graph. Other heads call ``head.sample`` with a
        per-step key.
        """
        num_samples = check_positive_int(num_samples, "num_samples")
        ordering = as_ordering(ordering, self.num_inputs)
        params = self._per_variable(ordering)
        dtype = self.W[...].dtype
        D = self.num_inputs

        def step(a, inputs):
            p, noise = inputs
            pre = a * p["rho"] if "rho" in p else a
            outputs = _readout(self.activation, pre, p["V"]) + p["bias"]  # (n, P)
            if self.head.binary:
                log_p1 = self.head.log_prob(outputs, jnp.ones((num_samples,), dtype))
                value = (noise < log_p1).astype(dtype)  # (n,)
            else:
                value = self.head.sample(noise, outputs)  # (n,)
            return a + value[:, None] * p["W"][None, :], value

        a0 = jnp.broadcast_to(self.c[...], (num_samples, self.num_hidden)).astype(dtype)
        if self.head.binary:
            noise = jnp.log(jax.random.uniform(key, (D, num_samples), dtype))
        else:
            noise = jax.random.split(key, D)
        _, values = jax.lax.scan(step, a0, (params, noise))  # (D, n) in ordering order
        if ordering is None:
            return values.T
        return jnp.zeros((num_samples, D), dtype).at[:, ordering].set(values.T)

    def init_from_data(self, x) -> None:
        """Sets the output biases from data marginals (see the head's ``init_bias``)."""
        x = check_inputs(x, self.num_inputs, binary=self.head.binary)
        self.b[...] = jnp.asarray(self.head.init_bias(x), self.b[...].dtype)


class BinaryNADE(SharedWeightNADE):
    """NADE over binary vectors: Bernoulli conditionals, sigmoid hidden units by default."""

    def __init__(
        self,
        num_inputs: int,
        num_hidden: int,
        *,
        activation: str = "sigmoid",
        block_size: int | str = "auto",
        param_dtype=jnp.float32,
        rngs: nnx.Rngs,
    ):
        super().__init__(
            num_inputs,
            num_hidden,
            BernoulliHead(),
            activation=activation,
            block_size=block_size,
            param_dtype=param_dtype,
            rngs=rngs,
        )
