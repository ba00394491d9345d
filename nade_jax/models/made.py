"""MADE (Germain, Gregor, Murray & Larochelle 2015): a masked autoencoder for density
estimation.

A feed-forward network y = f(x) whose weight matrices are multiplied by binary masks so
that output i depends only on the inputs that precede i in an ordering o. With degrees
m^0(i) = position of i in o (1 … D) for the inputs and m^l(k) ∈ {min_k' m^{l-1}(k'), …, D−1}
for the hidden units of layer l, the masks are

    M^l[k', k] = [m^l(k) >= m^{l-1}(k')],    M^V[k, i] = [m^0(i) > m^L(k)],

so ``log_prob`` is exact in one pass: p(x) = Π_i head(y_i)(x_i). Sampling needs D passes.

A *mask* is an ordering plus the hidden degrees (the connectivity). Here the connectivity is
a deterministic function of the ordering (hidden degrees drawn from a key folded with a hash
of the ordering), so an ordering names a mask and ``log_prob_per_ordering`` /
``ensemble_log_prob`` over orderings are ensembles over masks. Modes:

* fixed order (``order_agnostic=False``, the default): one connectivity (from ``mask_seed``)
  and the ordering the caller passes (the runner's training ordering).
* order- and connectivity-agnostic (``order_agnostic=True``): each training minibatch uses
  one mask drawn uniformly from a fixed set of ``num_masks`` masks (the paper's protocol), or
  a fresh random ordering with its own connectivity when ``num_masks`` is None.
  ``evaluation_orderings(K)`` returns the first K orderings of the set, to ensemble over the
  masks the model was trained with.
Connectivity-agnostic training under a single fixed ordering is not offered.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any, cast

import jax
import jax.numpy as jnp
from flax import nnx
from jax.typing import ArrayLike, DTypeLike

from nade_jax.checks import (
    as_batch,
    as_ordering,
    check_choice,
    check_hidden_sizes,
    check_inputs,
    check_positive_int,
)
from nade_jax.models.base import DataKind, DensityModel, check_values
from nade_jax.models.heads import OUTPUTS, Head, make_head
from nade_jax.models.nade import ACTIVATIONS
from nade_jax.registry import register_model

_HASH_STREAM = 2**31 - 1  # folded into the mask seed for the ordering hash's coefficients


@register_model("made")
class MADE(DensityModel):
    """MADE with L >= 1 masked hidden layers and a Bernoulli or MoG head.

    Args:
      num_inputs: D.
      hidden: (H_1, …, H_L) hidden layer sizes.
      output: "bernoulli" (binary data) or "mog" (real data, ``num_components`` per variable).
      order_agnostic: train over masks (orderings with their connectivities); the model is
        then orderless.
      num_masks: the size of the training set of masks (order-agnostic only); None draws a
        fresh mask every minibatch.
      mask_seed: seeds the masks' orderings and hidden degrees.
      activation: hidden nonlinearity, a key of ``nade.ACTIVATIONS``.

    Parameters: W (D, H_1), c (H_1,), ``layers`` (nnx.Linear H_{l-1} -> H_l), V (D, H_L, P),
    b (D, P). With one hidden layer of H units and a Bernoulli head that is 2DH + H + D, the
    parameter count of a NADE with H hidden units.
    """

    def __init__(
        self,
        num_inputs: int,
        hidden: Sequence[int] = (500,),
        output: str = "bernoulli",
        num_components: int = 10,
        *,
        order_agnostic: bool = False,
        num_masks: int | None = 1,
        mask_seed: int = 0,
        activation: str = "relu",
        min_scale: float = 1e-3,
        param_dtype: DTypeLike = jnp.float32,
        rngs: nnx.Rngs,
    ) -> None:
        self.num_inputs = check_positive_int(num_inputs, "num_inputs")
        self.hidden = check_hidden_sizes(hidden)
        self.output = check_choice(output, "output", OUTPUTS)
        self.activation = check_choice(activation, "activation", ACTIVATIONS)
        if not isinstance(order_agnostic, bool):
            raise ValueError(f"order_agnostic must be true or false, got {order_agnostic!r}")
        if num_masks is None and not order_agnostic:
            raise ValueError("num_masks must be an integer >= 1 for a fixed-order MADE, got None")
        self.num_masks = None if num_masks is None else check_positive_int(num_masks, "num_masks")
        if not order_agnostic and self.num_masks != 1:
            raise ValueError(
                f"num_masks must be 1 when order_agnostic is false (one ordering, one connectivity), got {num_masks}"
            )
        if type(mask_seed) is not int or mask_seed < 0:  # not a bool, not a float
            raise ValueError(f"mask_seed must be an integer >= 0, got {mask_seed!r}")
        self.mask_seed = mask_seed
        self.is_orderless = order_agnostic
        self.head: Head = make_head(output, num_components, min_scale)
        self.data_kind = cast(DataKind, self.head.data_kind)  # the head names one of DATA_KINDS

        D, P, H1, HL = self.num_inputs, self.head.num_outputs, self.hidden[0], self.hidden[-1]
        normal = lambda shape, fan_in: jax.random.normal(rngs.params(), shape, param_dtype) / math.sqrt(fan_in)
        self.W = nnx.Param(normal((D, H1), D))
        self.c = nnx.Param(jnp.zeros((H1,), param_dtype))
        self.layers = nnx.List(
            [
                nnx.Linear(n_in, n_out, param_dtype=param_dtype, rngs=rngs)
                for n_in, n_out in itertools.pairwise(self.hidden)
            ]
        )
        self.V = nnx.Param(normal((D, HL, P), HL))
        self.b = nnx.Param(jnp.zeros((D, P), param_dtype))

    # -- masks -----------------------------------------------------------------------------
    def mask_ordering(self, index: int | jax.Array) -> jax.Array:
        """(D,) the ordering of training mask ``index`` (an int or traced int)."""
        return jax.random.permutation(jax.random.fold_in(jax.random.key(self.mask_seed), index), self.num_inputs)

    def evaluation_orderings(self, num_orderings: int) -> jax.Array | None:
        """(min(K, num_masks), D): the first K masks of the training set (order-agnostic with
        a finite ``num_masks``); None otherwise (any ordering is as good as another)."""
        if not self.is_orderless or self.num_masks is None:
            return None
        count = min(check_positive_int(num_orderings, "num_orderings"), self.num_masks)
        return jnp.stack([self.mask_ordering(m) for m in range(count)])

    def _connectivity_key(self, ordering: jax.Array) -> jax.Array:
        """Fixed order: the key of ``mask_seed``. Order-agnostic: that key folded with a hash
        of the ordering, so every ordering has its own connectivity."""
        key = jax.random.key(self.mask_seed)
        if not self.is_orderless:
            return key
        coefficients = jax.random.bits(jax.random.fold_in(key, _HASH_STREAM), (self.num_inputs,), jnp.uint32)
        return jax.random.fold_in(key, jnp.sum(ordering.astype(jnp.uint32) * coefficients))

    def masks(self, ordering: jax.Array | None) -> list[jax.Array]:
        """The L + 1 masks for ``ordering``: (D, H_1), (H_1, H_2) … and the output mask
        (D, H_L) (entry [i, k]: output i may read hidden unit k)."""
        D = self.num_inputs
        ordering = jnp.arange(D) if ordering is None else ordering
        input_degree = jnp.zeros(D, jnp.int32).at[ordering].set(jnp.arange(1, D + 1, dtype=jnp.int32))
        keys = jax.random.split(self._connectivity_key(ordering), len(self.hidden))
        masks, previous = [], input_degree
        for key, size in zip(keys, self.hidden, strict=True):
            low = jnp.min(previous)
            degree = jnp.maximum(jax.random.randint(key, (size,), low, D), low)  # U{low, …, D-1}
            masks.append((degree[None, :] >= previous[:, None]).astype(self.W[...].dtype))
            previous = degree
        masks.append((input_degree[:, None] > previous[None, :]).astype(self.W[...].dtype))
        return masks

    # -- the network -----------------------------------------------------------------------
    def _outputs(self, x: jax.Array, masks: list[jax.Array]) -> jax.Array:
        """The head inputs (B, D, P) of every conditional, in one pass."""
        act = ACTIVATIONS[self.activation]
        h = act(self.c[...] + x @ (self.W[...] * masks[0]))
        for layer, mask in zip(self.layers, masks[1:-1], strict=True):
            assert layer.bias is not None  # nnx.Linear's default use_bias=True
            h = act(h @ (layer.kernel[...] * mask) + layer.bias[...])
        return jnp.einsum("bh,ihp->bip", h, self.V[...] * masks[-1][:, :, None]) + self.b[...]

    # -- the contract ----------------------------------------------------------------------
    def log_prob(self, x: jax.Array, ordering: jax.Array | None = None) -> jax.Array:
        """Exact log p(x) (B,) under the mask of ``ordering`` (None: the identity), one pass."""
        return self.log_prob_terms(x, ordering).sum(axis=1)

    def log_prob_terms(self, x: jax.Array, ordering: jax.Array | None = None) -> jax.Array:
        """(B, D) log p(x_{o_d} | x_{o_<d}) in ordering order, from the same single pass."""
        x = as_batch(x, self.num_inputs, self.W[...].dtype)
        ordering = as_ordering(ordering, self.num_inputs)
        terms = self.head.log_prob(self._outputs(x, self.masks(ordering)), x)  # (B, D) by variable
        return terms if ordering is None else terms[:, ordering]

    def loss(self, x: jax.Array, key: jax.Array | None = None, ordering: jax.Array | None = None) -> jax.Array:
        """Mean NLL of x (B, D): under ``ordering`` for a fixed-order MADE; order-agnostic,
        under one mask per call drawn with ``key`` (``ordering`` is then ignored)."""
        x = as_batch(x, self.num_inputs, self.W[...].dtype)
        if self.is_orderless:
            if key is None:
                raise ValueError("key must be a jax.random key: the order-agnostic MADE loss draws a mask")
            if self.num_masks is None:
                ordering = jax.random.permutation(key, self.num_inputs)
            else:
                ordering = self.mask_ordering(jax.random.randint(key, (), 0, self.num_masks))
        else:
            ordering = as_ordering(ordering, self.num_inputs)
        return -jnp.mean(self.log_prob(x, ordering))

    def sample(self, key: jax.Array, num_samples: int, ordering: jax.Array | None = None) -> jax.Array:
        """(num_samples, D) draws under the mask of ``ordering``: D passes in one ``lax.scan``,
        each fixing the next variable of the ordering."""
        num_samples = check_positive_int(num_samples, "num_samples")
        ordering = as_ordering(ordering, self.num_inputs)
        D, dtype = self.num_inputs, self.W[...].dtype
        order = jnp.arange(D) if ordering is None else ordering
        masks = self.masks(ordering)

        def step(x: jax.Array, inputs: tuple[jax.Array, Any]) -> tuple[jax.Array, None]:
            i, noise = inputs
            outputs = self._outputs(x, masks)[:, i]  # (n, P)
            return x.at[:, i].set(self.head.sample_from_noise(outputs, noise)), None

        noise = self.head.noise(key, (D, num_samples), dtype)
        x, _ = jax.lax.scan(step, jnp.zeros((num_samples, D), dtype), (order, noise))
        return x

    def init_from_data(self, x: ArrayLike) -> None:
        """Sets the output biases b from data marginals (see the head's ``init_bias``)."""
        x = check_inputs(x, self.num_inputs, binary=self.head.binary)
        check_values(x, self.data_kind, self.num_categories)
        self.b[...] = jnp.asarray(self.head.init_bias(x), self.b[...].dtype)
