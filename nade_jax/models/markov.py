"""The first-order Markov chain along an ordering: the seed's Markov-assumption baseline.

Along an ordering o, each binary variable depends only on the one before it:

    p(x_{o_1} = 1) = σ(b[o_1]),    p(x_{o_d} = 1 | x_{o_<d}) = σ(b[o_d] + w[o_d] x_{o_{d-1}}),

a logistic form of the full 2 x 2 transition table of each step. Parameters are indexed by
the original variable: b (D,) and w (D,), of which w[o_1] never enters, so a chain has
1 + 2 (D - 1) = 2D - 1 free parameters under any ordering. ``CategoricalMarkovChain`` is the
same chain over Q values per variable, with full Q × Q transition tables.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.typing import ArrayLike, DTypeLike

from nade_jax.checks import as_batch, as_ordering, check_inputs, check_positive_int
from nade_jax.models.base import DensityModel, check_values
from nade_jax.models.heads import BernoulliHead, CategoricalHead
from nade_jax.registry import register_model


def _signed_log_sigmoid(logits: jax.Array, x: jax.Array) -> jax.Array:
    """log p(x | logits) for x in {0, 1}: log σ(±logit), elementwise."""
    return jax.nn.log_sigmoid(jnp.where(x > 0.5, logits, -logits))


class _Chain(DensityModel):
    """What both chains share: parameters indexed by variable (``PARAMS``), read in
    ordering order; log p as the sum of the per-step terms; the mean-NLL loss."""

    PARAMS: tuple[str, ...] = ()
    b: nnx.Param[jax.Array]

    def _dtype(self) -> jnp.dtype:
        return self.b[...].dtype

    def _ordered(self, ordering: jax.Array | None) -> tuple[jax.Array, ...]:
        """The ``PARAMS`` arrays with their rows (variables) in ordering order."""
        values = tuple(getattr(self, name)[...] for name in self.PARAMS)
        return values if ordering is None else tuple(v[ordering] for v in values)

    def _to_variables(self, values: jax.Array, ordering: jax.Array | None) -> jax.Array:
        """(n, D) values in ordering order -> (n, D) by variable."""
        return values if ordering is None else jnp.zeros_like(values).at[:, ordering].set(values)

    def log_prob(self, x: jax.Array, ordering: jax.Array | None = None) -> jax.Array:
        """Exact log p(x) (B,) of x (B, D) under ``ordering`` (None: the identity)."""
        return self.log_prob_terms(x, ordering).sum(axis=1)

    def loss(self, x: jax.Array, key: jax.Array | None = None, ordering: jax.Array | None = None) -> jax.Array:
        """Mean NLL of x (B, D) under ``ordering``; ``key`` is unused."""
        del key
        return -self.log_prob(x, ordering).mean()


@register_model("markov")
class MarkovChain(_Chain):
    """First-order binary Markov chain along the ordering; b, w (D,).

    Args:
      num_inputs: D.
      param_dtype: parameter dtype.
      rngs: accepted for the runner's shared constructor call; the parameters start at zero
        (``init_from_data`` then sets b to the logit of each marginal: the independent model).
    """

    PARAMS = ("b", "w")

    def __init__(self, num_inputs: int, *, param_dtype: DTypeLike = jnp.float32, rngs: nnx.Rngs | None = None):
        del rngs
        self.num_inputs = check_positive_int(num_inputs, "num_inputs")
        self.data_kind = "binary"
        self.head = BernoulliHead()
        self.b = nnx.Param(jnp.zeros((self.num_inputs,), param_dtype))
        self.w = nnx.Param(jnp.zeros((self.num_inputs,), param_dtype))

    def log_prob_terms(self, x: jax.Array, ordering: jax.Array | None = None) -> jax.Array:
        """(B, D) log p(x_{o_d} | x_{o_{d-1}}) in ordering order."""
        x = as_batch(x, self.num_inputs, self._dtype())
        ordering = as_ordering(ordering, self.num_inputs)
        x_steps = x if ordering is None else x[:, ordering]
        previous = jnp.pad(x_steps[:, :-1], ((0, 0), (1, 0)))  # x_{o_{d-1}}, 0 before the first step
        b, w = self._ordered(ordering)
        return _signed_log_sigmoid(b + w * previous, x_steps)

    def sample(self, key: jax.Array, num_samples: int, ordering: jax.Array | None = None) -> jax.Array:
        """(num_samples, D) 0./1. draws, one ``lax.scan`` step per variable."""
        num_samples = check_positive_int(num_samples, "num_samples")
        ordering = as_ordering(ordering, self.num_inputs)
        dtype = self._dtype()
        log_u = jnp.log(jax.random.uniform(key, (self.num_inputs, num_samples), dtype))

        def step(previous: jax.Array, inputs: tuple[jax.Array, jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array]:
            b, w, noise = inputs
            value = (noise < jax.nn.log_sigmoid(b + w * previous)).astype(dtype)
            return value, value

        b, w = self._ordered(ordering)
        _, values = jax.lax.scan(step, jnp.zeros((num_samples,), dtype), (b, w, log_u))  # (D, n)
        return self._to_variables(values.T, ordering)

    def init_from_data(self, x: ArrayLike) -> None:
        """b = logit of each clipped marginal, w = 0: the chain starts as the independent model."""
        x = check_inputs(x, self.num_inputs, binary=True)
        self.b[...] = jnp.asarray(self.head.init_bias(x)[:, 0], self._dtype())
        self.w[...] = jnp.zeros_like(self.w[...])


@register_model("categorical_markov")
class CategoricalMarkovChain(_Chain):
    """First-order categorical Markov chain along the ordering, over Q values per variable.

        p(x_{o_1} = q) = softmax(b[o_1])_q,
        p(x_{o_d} = q | x_{o_{d-1}} = r) = softmax(b[o_d] + T[o_d, r])_q,   d > 1,

    the full Q × Q transition table of each step (T[i, r] is the row for previous value r).
    Parameters are indexed by the original variable: b (D, Q), T (D, Q, Q); b[o_d] is
    redundant with T[o_d] for d > 1 and T[o_1] never enters, so a chain has (Q − 1) +
    (D − 1)·Q·(Q − 1) free parameters under any ordering: 2D − 1 at Q = 2 (``MarkovChain``).
    The full form is kept at Q = 256 (D = 192: 12.5M parameters, 50 MB in float32): the
    tables are gathered, never multiplied, so a step costs O(B·D·Q), and early stopping on
    validation bounds the overfitting of the sparse transition counts.

    Args:
      num_inputs: D.
      num_categories: Q >= 2 (the runner takes it from the data when the config says null).
      param_dtype: parameter dtype.
      rngs: accepted for the runner's shared constructor call; the parameters start at zero
        (``init_from_data`` then sets b to the smoothed log-marginals: the independent model).
    """

    PARAMS = ("b", "T")

    def __init__(
        self,
        num_inputs: int,
        num_categories: int = 256,
        *,
        param_dtype: DTypeLike = jnp.float32,
        rngs: nnx.Rngs | None = None,
    ):
        del rngs
        self.num_inputs = check_positive_int(num_inputs, "num_inputs")
        num_categories = check_positive_int(num_categories, "num_categories")
        if num_categories < 2:
            raise ValueError(f"num_categories must be an integer >= 2, got {num_categories}")
        self.head = CategoricalHead(num_categories)
        self.num_categories = num_categories
        self.data_kind = "categorical"
        D, Q = self.num_inputs, num_categories
        self.b = nnx.Param(jnp.zeros((D, Q), param_dtype))
        self.T = nnx.Param(jnp.zeros((D, Q, Q), param_dtype))

    def log_prob_terms(self, x: jax.Array, ordering: jax.Array | None = None) -> jax.Array:
        """(B, D) log p(x_{o_d} | x_{o_{d-1}}) in ordering order."""
        x = as_batch(x, self.num_inputs, self._dtype())
        ordering = as_ordering(ordering, self.num_inputs)
        x_steps = (x if ordering is None else x[:, ordering]).astype(jnp.int32)
        b, T = self._ordered(ordering)
        steps = jnp.arange(self.num_inputs)
        previous = jnp.pad(x_steps[:, :-1], ((0, 0), (1, 0)))  # (B, D); step 0 reads no row
        transition = jnp.where((steps > 0)[None, :, None], T[steps[None, :], previous], 0)  # (B, D, Q)
        return self.head.log_prob(b + transition, x_steps)

    def sample(self, key: jax.Array, num_samples: int, ordering: jax.Array | None = None) -> jax.Array:
        """(num_samples, D) values 0 … Q-1 as floats, one ``lax.scan`` step per variable."""
        num_samples = check_positive_int(num_samples, "num_samples")
        ordering = as_ordering(ordering, self.num_inputs)
        dtype = self._dtype()
        b, T = self._ordered(ordering)
        noise = self.head.noise(key, (self.num_inputs, num_samples), dtype)  # (D, n, Q)
        first = self.head.sample_from_noise(jnp.broadcast_to(b[0], (num_samples, b.shape[1])), noise[0])

        def step(previous: jax.Array, inputs: tuple[jax.Array, jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array]:
            b_d, T_d, noise_d = inputs
            value = self.head.sample_from_noise(b_d + T_d[previous.astype(jnp.int32)], noise_d)
            return value, value

        _, rest = jax.lax.scan(step, first, (b[1:], T[1:], noise[1:]))  # (D - 1, n)
        values = jnp.concatenate([first[None], rest]).T  # (n, D) in ordering order
        return self._to_variables(values, ordering)

    def init_from_data(self, x: ArrayLike) -> None:
        """b = smoothed log-marginals; with T at its initial zeros the chain starts as the
        independent model."""
        x = check_inputs(x, self.num_inputs, binary=False)
        check_values(x, self.data_kind, self.num_categories)
        self.b[...] = jnp.asarray(self.head.init_bias(x), self._dtype())

    def fit_counts(
        self, x: ArrayLike, ordering: ArrayLike | None = None, pseudo_count: float = 1.0, towards: str = "marginal"
    ) -> None:
        """Sets the chain to its closed-form fit to x (N, D) under ``ordering``: smoothed counts,

            p(x_{o_1} = q) ∝ n(q) + a·Q·m_{o_1}(q),
            p(x_{o_d} = q | x_{o_{d-1}} = r) ∝ n_d(r, q) + a·Q·m_{o_d}(q),

        with a = ``pseudo_count`` > 0 (a·Q pseudo-observations per row) and m_i ``towards``
        "marginal" (the variable's marginal, (n_i(q) + 1) / (N + Q): a rarely seen previous
        value falls back to the independent model) or "uniform" (m_i(q) = 1/Q). Each is the
        maximum of the training log-likelihood plus a Dirichlet log-prior centred on m
        (a -> 0: maximum likelihood, which gradient training only approaches); at Q = 256 most
        of a step's Q² pairs are never seen, so the choice matters, and is made on validation
        (experiments/rgb_markov_counts.py). b holds the first step's log-probabilities and T
        every later step's, so b[o_d] = 0 for d > 1; the fit is for this ordering only.
        """
        x = np.asarray(check_inputs(x, self.num_inputs, binary=False))
        check_values(x, self.data_kind, self.num_categories)
        if not pseudo_count > 0:
            raise ValueError(f"pseudo_count must be > 0, got {pseudo_count}")
        if towards not in ("marginal", "uniform"):
            raise ValueError(f"towards must be one of marginal, uniform, got {towards!r}")
        D, Q = self.num_inputs, self.head.num_categories
        order = np.arange(D) if ordering is None else np.asarray(as_ordering(ordering, D))
        steps = x[:, order].astype(np.int64)  # (N, D) in ordering order
        centre = np.ones((D, Q))  # (D, Q) in ordering order: uniform, or the +1-smoothed marginals
        if towards == "marginal":
            centre += np.stack([np.bincount(column, minlength=Q) for column in steps.T])
        prior = pseudo_count * Q * centre / centre.sum(axis=1, keepdims=True)
        first = np.bincount(steps[:, 0], minlength=Q) + prior[0]  # (Q,)
        # n_d(r, q) for every step d > 1 at once: pair (r, q) of step d is bin (d - 1)·Q² + r·Q + q.
        pairs = steps[:, :-1] * Q + steps[:, 1:] + np.arange(D - 1) * Q * Q  # (N, D - 1)
        counts = np.bincount(pairs.ravel(), minlength=(D - 1) * Q * Q).reshape(D - 1, Q, Q) + prior[1:, None, :]
        b = np.zeros((D, Q))
        b[order[0]] = np.log(first / first.sum())
        T = np.zeros((D, Q, Q))
        T[order[1:]] = np.log(counts / counts.sum(axis=2, keepdims=True))
        self.b[...] = jnp.asarray(b, self._dtype())
        self.T[...] = jnp.asarray(T, self._dtype())
