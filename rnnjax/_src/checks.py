"""Input validation that fails at trace time with a message naming the argument.

Every check here runs on shapes and dtypes (static under ``jit``), so it costs
nothing at run time. Value checks (non-finite inputs, a traced ``length``) run
only in checked mode, see :func:`rnnjax.checking`.
"""

import contextlib
import contextvars
import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import checkify

_CHECKING = contextvars.ContextVar("rnnjax_checking", default=False)


@contextlib.contextmanager
def checking(enabled: bool = True):
    """Turn on value checks (non-finite inputs, ``length`` in range) while tracing.

    Shape and dtype checks always run; value checks cost a pass over the data, so
    they are opt-in. On concrete arrays (no ``jit``) a failed check raises
    ``ValueError`` at once. Under ``jit`` the check is a
    :func:`jax.experimental.checkify.check`: wrap the jitted function with
    ``checkify.checkify`` and call ``err.throw()``. The flag is read when a function
    is traced, so a function jitted before entering the context is not checked.

    Example:
        >>> import jax.numpy as jnp, rnnjax as rj
        >>> cell = rj.ElmanCell(4)
        >>> params = cell.init(jax.random.key(0), 3)
        >>> with rj.checking():
        ...     rj.unroll(cell, params, jnp.full((5, 3), jnp.nan))
        Traceback (most recent call last):
        ...
        ValueError: xs: expected finite values, got NaN or inf
    """
    token = _CHECKING.set(enabled)
    try:
        yield
    finally:
        _CHECKING.reset(token)


def is_checking() -> bool:
    return _CHECKING.get()


class checked_jit:  # noqa: N801 -- used as a decorator, like jax.jit
    """``jax.jit(fun)``; in checking mode ``jax.jit(checkify.checkify(fun))``, its error raised.

    For the functions the library jits itself (train steps, decoders): a ``checkify.check``
    traced inside a plain ``jit`` cannot be raised, so in checking mode the call goes to a
    second, checkified compilation and a failed check raises ``ValueError`` (checkify's
    ``JaxRuntimeError``) after the call. Outside checking mode nothing is added. Attributes
    (``lower``, ``eval_shape``, ...) are those of the plain jitted function. Called while
    tracing (inside another ``jit`` or ``vmap``) in checking mode, its checks are traced into
    the outer function: checkify that one (``vmap`` outside ``checkify`` where there are loops:
    checkify cannot batch while loops).
    """

    def __init__(self, fun=None, **jit_kwargs):
        if fun is None:  # @checked_jit(static_argnames=...)
            self._pending = jit_kwargs
            return
        self._plain = jax.jit(fun, **jit_kwargs)
        # traced with the checks in, for calls inside an outer transformation in checking mode: a
        # function of its own, so that jit's trace cache never hands its traces to unchecked calls
        self._plain_checking = jax.jit(functools.wraps(fun)(lambda *args, **kwargs: fun(*args, **kwargs)), **jit_kwargs)
        checked = functools.wraps(fun)(lambda *args, **kwargs: checkify.checkify(fun)(*args, **kwargs))
        # the checkified function returns (error, out): out_shardings would not fit, leave them to XLA
        self._checked = jax.jit(checked, **{k: v for k, v in jit_kwargs.items() if k != "out_shardings"})
        functools.update_wrapper(self, fun, updated=())  # not fun.__dict__: a checked_jit's would replace ours

    def __call__(self, *args, **kwargs):
        if not hasattr(self, "_plain"):  # the decorator's second call: the function
            return checked_jit(args[0], **self._pending)
        if not is_checking():
            return self._plain(*args, **kwargs)
        if _is_tracing(args, kwargs):  # inside another transformation: a checkify around it functionalizes the checks
            return self._plain_checking(*args, **kwargs)
        error, out = self._checked(*args, **kwargs)
        error.throw()
        return out

    def __getattr__(self, name):
        if name.startswith("__") or name in ("_plain", "_plain_checking", "_checked", "_pending"):
            raise AttributeError(name)
        return getattr(self._plain, name)


def _is_concrete(x) -> bool:
    return not isinstance(x, jax.core.Tracer)


def _is_tracing(*trees) -> bool:
    return any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves(trees))


def value_check(ok, message: str) -> None:
    """Assert ``ok`` (a boolean scalar) now if concrete, else as a checkify check."""
    if _is_concrete(ok):
        if not bool(ok):
            raise ValueError(message)
    else:
        checkify.check(ok, message)


def values(name: str, expected: str, valid, *arrays) -> None:
    """``valid(*arrays)``, a boolean array, must be all True; else an error naming ``name``.

    Checked at once, in NumPy, when every array is concrete (the message shows the first few
    values of ``arrays[0]`` where ``valid`` is False); when one is traced, only in checked mode
    (:func:`rnnjax.checking`), as a ``checkify`` check; otherwise nothing is traced. ``valid``
    must work on NumPy and JAX arrays alike (operators, ``astype``).
    """
    if all(_is_concrete(a) for a in arrays):
        arrays = [np.asarray(a) for a in arrays]
        ok = np.asarray(valid(*arrays))
        if not ok.all():
            bad = np.broadcast_to(arrays[0], ok.shape)[~ok]
            got = bad[0] if bad.size == 1 else f"{bad[:5].tolist()}{' ...' if bad.size > 5 else ''}"
            raise ValueError(f"{name}: expected {expected}, got {got}")
    elif is_checking():
        value_check(jnp.all(valid(*arrays)), f"{name}: expected {expected}")


def in_range(low, high):
    """``low <= x < high`` elementwise, for NumPy and JAX arrays (False for NaN): a ``valid`` for :func:`values`."""
    return lambda x: (x >= low) & (x < high)


def floating(x, name: str):
    """``x`` as an array of a floating dtype, or a TypeError naming ``name``."""
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(
            f"{name}: expected a floating dtype (float32, bfloat16, float64), got {x.dtype}"
            + ("; embed integer token ids first" if jnp.issubdtype(x.dtype, jnp.integer) else "")
        )
    return x


def features(x, input_size: int, name: str) -> None:
    """The last axis of ``x`` must be ``input_size`` (the size the params were made for)."""
    if x.ndim < 1 or x.shape[-1] != input_size:
        raise ValueError(
            f"{name}: expected last axis of size {input_size} (the input_size the params "
            f"were initialised with), got shape {tuple(x.shape)}"
        )


def sequence(xs, input_size: int | None, name: str = "xs"):
    """A single sequence ``[t, f]`` of floats with ``f == input_size`` (any ``f`` if None)."""
    xs = floating(xs, name)
    if xs.ndim != 2:
        hint = " (one sequence; batch with jax.vmap)" if xs.ndim == 3 else ""
        raise ValueError(f"{name}: expected shape [t, {input_size or 'f'}]{hint}, got shape {tuple(xs.shape)}")
    if input_size is not None:
        features(xs, input_size, name)
    if is_checking():
        value_check(jnp.all(jnp.isfinite(xs)), f"{name}: expected finite values, got NaN or inf")
    return xs


def length(length, num_steps: int, name: str = "length"):
    """``None``, or an integer scalar in ``[0, num_steps]``, returned as an int32 array."""
    if length is None:
        return None
    host = length if isinstance(length, int | np.integer | np.ndarray) and not isinstance(length, bool) else None
    if host is not None and np.ndim(host) == 0 and np.issubdtype(np.asarray(host).dtype, np.integer):
        # checked before the int32 conversion, which would overflow (2**40) or wrap silently (np.int64(2**32))
        if not 0 <= int(host) <= num_steps:
            raise ValueError(f"{name}: expected 0 <= {name} <= {num_steps} (the number of steps), got {int(host)}")
    arr = jnp.asarray(length)
    if not jnp.issubdtype(arr.dtype, jnp.integer):
        raise TypeError(f"{name}: expected an integer scalar, got dtype {arr.dtype}")
    if arr.ndim != 0:
        raise ValueError(
            f"{name}: expected a scalar (the length of one sequence; vmap over a batch "
            f"of lengths), got shape {tuple(arr.shape)}"
        )
    if _is_concrete(arr):
        value = int(arr)
        if not 0 <= value <= num_steps:
            raise ValueError(f"{name}: expected 0 <= {name} <= {num_steps} (the number of steps), got {value}")
    elif is_checking():
        value_check((arr >= 0) & (arr <= num_steps), f"{name}: expected 0 <= {name} <= {num_steps}")
    return arr.astype(jnp.int32)


def step_mask(mask, num_steps: int, name: str = "mask"):
    """``None``, or a boolean ``[num_steps]`` (True: the step is valid); 0/1 integers are taken as booleans."""
    if mask is None:
        return None
    arr = jnp.asarray(mask)
    if arr.dtype != jnp.bool_ and not jnp.issubdtype(arr.dtype, jnp.integer):
        raise TypeError(f"{name}: expected booleans (True: a valid step), got dtype {arr.dtype}")
    if arr.shape != (num_steps,):
        raise ValueError(
            f"{name}: expected shape ({num_steps},) (one flag per step of one sequence; vmap over a batch "
            f"of masks), got shape {tuple(arr.shape)}"
        )
    return arr.astype(bool)


def masked_output(value: str) -> str:
    """``"zeros"`` or ``"last"``: what a sequence layer outputs at a masked step."""
    if value not in ("zeros", "last"):
        raise ValueError(
            f"masked_output: expected 'zeros' (zero outputs at masked steps) or 'last' (the last valid step's "
            f"output, as Keras), got {value!r}"
        )
    return value


def same_structure(given, expected, name: str) -> None:
    """``given`` must have the tree structure and leaf shapes of ``expected``."""
    given_def = jax.tree_util.tree_structure(given)
    expected_def = jax.tree_util.tree_structure(expected)
    if given_def != expected_def:
        raise ValueError(f"{name}: expected a pytree of structure {expected_def}, got {given_def}")
    for g, e in zip(jax.tree_util.tree_leaves(given), jax.tree_util.tree_leaves(expected), strict=True):
        if np.shape(g) != np.shape(e):
            raise ValueError(
                f"{name}: expected shapes {jax.tree_util.tree_map(np.shape, expected)}, "
                f"got {jax.tree_util.tree_map(np.shape, given)}"
            )


def params_type(params, expected_type, cell) -> None:
    """``params`` must be an ``expected_type`` (a type, or a union of types)."""
    if not isinstance(params, expected_type):
        name = getattr(expected_type, "__name__", None) or " or ".join(t.__name__ for t in expected_type.__args__)
        raise TypeError(f"params: expected {name} (from {type(cell).__name__}.init), got {type(params).__name__}")


def positive_int(value, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{name}: expected a positive integer, got {value!r}")


def non_negative_int(value, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
        raise ValueError(f"{name}: expected a non-negative integer, got {value!r}")


def token_ids(ids, name: str, ndim: int | None = None, shape: str = ""):
    """``ids`` as an array of an integer dtype with ``ndim`` axes (if given), or an error naming ``name``.

    ``shape`` (e.g. ``"[t]"``) is the expected shape written in the notation letters, for the message.
    """
    ids = jnp.asarray(ids)
    if not jnp.issubdtype(ids.dtype, jnp.integer):
        raise TypeError(f"{name}: expected integer token ids, got dtype {ids.dtype}")
    if ndim is not None and ids.ndim != ndim:
        hint = " (one example; batch with jax.vmap)" if ids.ndim > ndim else ""
        raise ValueError(f"{name}: expected shape {shape or ndim * '[.]'}{hint}, got shape {tuple(ids.shape)}")
    return ids


def _described(value) -> str:
    if value is None:
        return "None"
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        return f"an array of shape {tuple(value.shape)}"
    return f"a {type(value).__name__}"


def params_like(params, expected, owner: str, name: str = "params", hint=None, shapes: bool = True) -> None:
    """``params`` must have the structure, the exact shapes and floating dtypes of ``expected``.

    ``expected`` is a pytree of ``jax.ShapeDtypeStruct`` (``jax.eval_shape`` of an ``init``);
    NamedTuples must be of the same type (a plain tuple may be a list). Errors name the field
    (``params.b: expected shape (32,) for LSTMCell(hidden_size=8), got (1,)``); ``owner``
    says whose params they are; ``hint()`` adds to the message when an array is None or
    the reverse (e.g. the hyper-parameter that would make these params). ``shapes=False``
    checks everything but the arrays' shapes (to read a size from params of the right structure).
    """
    if expected is None or params is None:
        if expected is None and params is None:
            return
        needs = "None here" if expected is None else f"{_described(expected)} here"
        raise ValueError(
            f"{name}: {owner} expects {needs}; these params have {_described(params)}" + (hint() if hint else "")
        )
    if isinstance(expected, tuple):
        fields = getattr(expected, "_fields", None)
        if fields is not None and type(params) is not type(expected):
            raise TypeError(f"{name}: expected a {type(expected).__name__} for {owner}, got {_described(params)}")
        if fields is None and not isinstance(params, tuple | list):
            raise TypeError(f"{name}: expected a tuple for {owner}, got {_described(params)}")
        if len(params) != len(expected):
            raise ValueError(f"{name}: expected {len(expected)} entries for {owner}, got {len(params)}")
        for i, (p, e) in enumerate(zip(params, expected, strict=True)):
            params_like(p, e, owner, f"{name}.{fields[i]}" if fields else f"{name}[{i}]", hint, shapes)
        return
    if not (hasattr(params, "shape") and hasattr(params, "dtype")):
        raise TypeError(
            f"{name}: expected an array of shape {tuple(expected.shape)} for {owner}, got {_described(params)}"
        )
    if not jnp.issubdtype(params.dtype, jnp.floating):
        raise TypeError(f"{name}: expected a floating dtype for {owner}, got {params.dtype}")
    if shapes and tuple(params.shape) != tuple(expected.shape):
        raise ValueError(f"{name}: expected shape {tuple(expected.shape)} for {owner}, got {tuple(params.shape)}")


def token_sequence(ids, name: str, vocab_size: int, letter: str = "t") -> jax.Array:
    """Token ids ``[t]`` (integers, one axis); in checking mode also each in ``[0, vocab_size)``."""
    ids = token_ids(ids, name, 1, f"[{letter}]")
    if is_checking():
        value_check(jnp.all((ids >= 0) & (ids < vocab_size)), f"{name}: expected token ids in [0, {vocab_size})")
    return ids


def one_token(token, vocab_size: int, name: str = "token") -> jax.Array:
    """One token id (shape ``()``); in checking mode also in ``[0, vocab_size)``."""
    token = token_ids(token, name, 0, "[] (one token id)")
    if is_checking():
        value_check((token >= 0) & (token < vocab_size), f"{name}: expected a token id in [0, {vocab_size})")
    return token
