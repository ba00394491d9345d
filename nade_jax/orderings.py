"""Orderings (int permutations of range(D)) and evaluation vmapped over many of them."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.typing import ArrayLike

from nade_jax.checks import check_batch, check_ordering, check_positive_int

if TYPE_CHECKING:
    from nade_jax.models.base import DensityModel


def identity(num_inputs: int) -> jax.Array:
    """(D,) the natural order 0, 1, …, D-1."""
    return jnp.arange(check_positive_int(num_inputs, "num_inputs"))


def reverse(num_inputs: int) -> jax.Array:
    """(D,) the order D-1, …, 0."""
    return identity(num_inputs)[::-1]


def random(key: jax.Array, num_inputs: int) -> jax.Array:
    """(D,) a uniformly random permutation."""
    return jax.random.permutation(key, check_positive_int(num_inputs, "num_inputs"))


def random_batch(key: jax.Array, num_orderings: int, num_inputs: int) -> jax.Array:
    """(K, D) K independent uniformly random permutations."""
    keys = jax.random.split(key, check_positive_int(num_orderings, "num_orderings"))
    return jax.vmap(lambda k: random(k, num_inputs))(keys)


def _image_indices(image_shape: tuple[int, ...]) -> np.ndarray:
    """(H, W, C) the variable index of each (row, column, channel) of a row-major image (a
    grey (H, W) image has C = 1): variable d = (row · W + column) · C + channel."""
    if len(image_shape) not in (2, 3):
        raise ValueError(f"image_shape must be (H, W) or (H, W, C), got {image_shape}")
    for name, size in zip(("height", "width", "channels"), image_shape, strict=False):
        check_positive_int(size, name)
    height, width, channels = (*image_shape, 1)[:3]
    return np.arange(height * width * channels).reshape(height, width, channels)


def column_major(height: int, width: int, channels: int = 1) -> jax.Array:
    """(H·W·C,) visits a row-major (H, W, C) image column by column, the C channels of each
    pixel one after another."""
    return jnp.asarray(_image_indices((height, width, channels)).transpose(1, 0, 2).reshape(-1))


def pixel_rgb(height: int, width: int, channels: int = 1) -> jax.Array:
    """(H·W·C,) raster over pixels, then r → g → b inside each pixel: p(r) p(g | r) p(b | r, g)
    per pixel. With the row-major (H, W, C) storage this is the identity."""
    return jnp.asarray(_image_indices((height, width, channels)).reshape(-1))


def channel_major(height: int, width: int, channels: int = 1) -> jax.Array:
    """(H·W·C,) every pixel's first channel in raster order, then every second channel, …:
    all r, then all g, then all b. For a grey image this is the identity."""
    return jnp.asarray(_image_indices((height, width, channels)).transpose(2, 0, 1).reshape(-1))


IMAGE_KINDS = {"column_major": column_major, "pixel_rgb": pixel_rgb, "channel_major": channel_major}


def _check_orderings(model: DensityModel, x: jax.Array, orderings: ArrayLike) -> jax.Array:
    check_batch(x, model.num_inputs)
    orderings = jnp.asarray(orderings)
    check_ordering(orderings, model.num_inputs, name="orderings")
    if orderings.ndim != 2:
        raise ValueError(f"orderings must have shape (K, {model.num_inputs}), got shape {orderings.shape}")
    return orderings


@functools.partial(jax.jit, static_argnums=(0, 4))
def _per_ordering(
    graphdef: nnx.GraphDef[DensityModel],
    state: nnx.State[Any, Any],
    x: jax.Array,
    orderings: jax.Array,
    chunk_size: int | None,
) -> jax.Array:
    model = nnx.merge(graphdef, state)

    def log_prob(ordering: jax.Array) -> jax.Array:
        return model.log_prob(x, ordering)

    if chunk_size is None or chunk_size >= orderings.shape[0]:
        return jax.vmap(log_prob)(orderings)
    return jax.lax.map(log_prob, orderings, batch_size=chunk_size)


def log_prob_per_ordering(
    model: DensityModel, x: ArrayLike, orderings: ArrayLike, chunk_size: int | None = 16
) -> jax.Array:
    """Exact log p(x) under each of K orderings: (K, B), one jit-compiled call.

    The K orderings are vmapped ``chunk_size`` at a time (None: all at once), which bounds
    memory to chunk_size times that of one ``log_prob``. Vmapping puts the orderings into
    the rows of every matmul ((chunk·B, H) for OrderlessNADE's upper layers): on CPU that
    was 1.3× faster than mapping them one at a time (chunk_size=1) at K = 8, and the
    default 16 was within 10 % of the fastest method at K = 1, 8 and 32
    (benchmarks/RESULTS.md).
    """
    x = jnp.asarray(x)
    orderings = _check_orderings(model, x, orderings)
    if chunk_size is not None:
        chunk_size = check_positive_int(chunk_size, "chunk_size")
    graphdef, state = nnx.split(model)
    return _per_ordering(graphdef, state, x, orderings, chunk_size)


def ensemble_log_prob(
    model: DensityModel, x: ArrayLike, orderings: ArrayLike, chunk_size: int | None = 16
) -> jax.Array:
    """(B,) log of the mean over K orderings of p(x | ordering): logsumexp − log K."""
    per_ordering = log_prob_per_ordering(model, x, orderings, chunk_size)
    return jax.nn.logsumexp(per_ordering, axis=0) - np.log(per_ordering.shape[0])


KINDS = ("identity", "reverse", "random", *IMAGE_KINDS)


def make(kind: str, num_inputs: int, *, seed: int = 0, image_shape: tuple[int, ...] | None = None) -> jax.Array:
    """Builds a (D,) ordering by name, as the ``ordering/`` configs describe it. The image
    kinds (``IMAGE_KINDS``) need the data's ``image_shape``, (H, W) or (H, W, C), stored
    row-major (``Splits``)."""
    if kind not in KINDS:
        raise ValueError(f"ordering.kind must be one of {list(KINDS)}, got {kind!r}")
    if kind == "identity":
        return identity(num_inputs)
    if kind == "reverse":
        return reverse(num_inputs)
    if kind == "random":
        return random(jax.random.key(seed), num_inputs)
    if image_shape is None or int(np.prod(image_shape)) != num_inputs:
        raise ValueError(
            f"ordering.kind={kind} needs image data of {num_inputs} variables, got image_shape={image_shape}"
        )
    return IMAGE_KINDS[kind](*image_shape)


def label(kind: str, seed: int = 0) -> str:
    """The name of an ordering config: its kind, plus the seed for the seeded kind
    (``random_s3``). Training orderings and evaluation orderings share these names, so that
    results line up across a sweep."""
    return f"{kind}_s{seed}" if kind == "random" else kind


def check_specs(specs: Any) -> list[tuple[str, int]]:
    """[(kind, seed)] of a list of ordering configs ({kind, seed}, as in ``conf/ordering``);
    raises ``ValueError`` naming the bad entry of ``trainer.eval_orderings``."""
    if specs is not None and (isinstance(specs, (str, bytes)) or not hasattr(specs, "__iter__")):
        raise ValueError(f"trainer.eval_orderings must be a list of ordering configs {{kind, seed}}, got {specs!r}")
    checked = []
    for index, spec in enumerate(specs or []):
        if not hasattr(spec, "get") or spec.get("kind") not in KINDS:
            raise ValueError(
                f"trainer.eval_orderings[{index}] must be an ordering config {{kind, seed}} with kind one "
                f"of {list(KINDS)}, got {spec!r}"
            )
        seed = spec.get("seed", 0)
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise ValueError(f"trainer.eval_orderings[{index}].seed must be an integer, got {seed!r}")
        checked.append((spec["kind"], seed))
    return checked


def from_specs(specs: Any, num_inputs: int, image_shape: tuple[int, ...] | None = None) -> dict[str, jax.Array]:
    """{label: (D,) ordering} for a list of ordering configs ({kind, seed}), in order, without
    duplicates (``check_specs`` checks them)."""
    return {
        label(kind, seed): make(kind, num_inputs, seed=seed, image_shape=image_shape)
        for kind, seed in check_specs(specs)
    }
