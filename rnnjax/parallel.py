"""Data-parallel (and optional model-parallel) training over a :class:`jax.sharding.Mesh`.

rnnjax scales out with JAX's own SPMD machinery (GSPMD): arrays carry a
:class:`~jax.sharding.NamedSharding` over a mesh with the axes ``("data", "model")``, and the
single-device train step of :func:`rnnjax.train.make_train_step` (or the stateful step of
:func:`rnnjax.train.make_stateful_train_step`) is jitted again with input and output shardings.
XLA inserts the collectives (the all-reduce of the gradient over ``data``, the gathers of the
gate blocks over ``model``); the program is the same on 1 device, 8 devices or a TPU pod, and on
many hosts after :func:`jax.distributed.initialize`.

Layout of a step:

- the batch (a pytree whose leaves all have the leading axis ``b``) is split along ``b`` over the
  ``data`` axis (``PartitionSpec("data")``) and replicated over ``model``; so is the carry of the
  stateful step (one carry per stream of the batch, on the device of that stream's rows);
- params and optimizer state are replicated, except, with a ``model`` axis of size > 1, the
  gate-stacked weights of the cells (``w_i [f, g]``, ``w_h [h, g]``, ``b [g]``, ``b_h [g]`` of
  :class:`~rnnjax.ElmanParams`, :class:`~rnnjax.LSTMParams`, :class:`~rnnjax.GRUParams`,
  :class:`~rnnjax.MinGRUParams`, :class:`~rnnjax.MinLSTMParams`), whose last axis ``g`` is split
  over ``model`` when it divides by the axis size;
- the loss is the mean over the *global* batch (``jnp.mean`` in the loss sees the whole logical
  array), so a step on N devices gives the params of the single-device step on the same batch,
  up to the order of floating-point sums (the tests check 1e-6).

The PRNG key is replicated; with ``jax_threefry_partitionable`` (JAX's default) random numbers
drawn inside the loss do not depend on the number of devices.
"""

from collections.abc import Callable
from typing import Any

import jax
import numpy as np
import optax
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from rnnjax import train
from rnnjax._src import checks
from rnnjax.typing import GatedParams, Params

DATA, MODEL = "data", "model"  # the mesh axis names


# --- the mesh ----------------------------------------------------------------------------------


def make_mesh(num_devices: int | None = None, *, model: int = 1, devices=None) -> Mesh:
    """A 2-D mesh with axes ``("data", "model")`` over the first ``num_devices`` devices.

    On many hosts (after :func:`jax.distributed.initialize`), ``jax.devices()`` lists the devices
    of every host, and the mesh spans them all.

    Args:
      num_devices: how many devices (None: all of ``devices``); the data axis gets
        ``num_devices // model`` of them.
      model: size of the ``model`` axis (1: pure data parallelism).
      devices: the devices to use (None: ``jax.devices()``).

    Returns:
      A :class:`jax.sharding.Mesh` of shape ``{"data": num_devices // model, "model": model}``.

    Raises:
      ValueError: more devices asked for than there are, or ``model`` does not divide ``num_devices``.

    Example:
        >>> import rnnjax as rj
        >>> mesh = rj.parallel.make_mesh(1)
        >>> dict(mesh.shape)
        {'data': 1, 'model': 1}
    """
    devices = list(jax.devices() if devices is None else devices)
    num_devices = len(devices) if num_devices is None else num_devices
    checks.positive_int(num_devices, "num_devices")
    checks.positive_int(model, "model")
    if num_devices > len(devices):
        raise ValueError(
            f"num_devices: expected at most the {len(devices)} available device(s) ({devices[0].platform}), "
            f"got {num_devices} (for N fake CPU devices, set XLA_FLAGS=--xla_force_host_platform_device_count=N "
            "before jax is imported)"
        )
    if num_devices % model:
        raise ValueError(f"model: expected a divisor of num_devices = {num_devices}, got {model}")
    # Auto axes: GSPMD propagates the shardings (JAX's default for make_mesh became Explicit axes)
    auto = (AxisType.Auto, AxisType.Auto)
    return jax.make_mesh((num_devices // model, model), (DATA, MODEL), auto, devices=devices[:num_devices])


def _data_size(mesh: Mesh) -> int:
    return mesh.shape[DATA]


# --- placing arrays ----------------------------------------------------------------------------


def replicated(mesh: Mesh) -> NamedSharding:
    """The sharding that keeps a full copy on every device of ``mesh``.

    Example:
        >>> import rnnjax as rj
        >>> rj.parallel.replicated(rj.parallel.make_mesh(1)).spec
        P()
    """
    return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """The sharding of a batch leaf: its leading axis ``b`` split over ``data``, replicated over ``model``.

    Example:
        >>> import rnnjax as rj
        >>> rj.parallel.batch_sharding(rj.parallel.make_mesh(1)).spec
        P('data',)
    """
    return NamedSharding(mesh, P(DATA))


def param_shardings(tree: Any, mesh: Mesh) -> Any:
    """Shardings for params or optimizer state: replicated, except gate dimensions over ``model``.

    The ``gate_fields`` of params that declare them (:class:`rnnjax.typing.GatedParams`: the
    Elman, LSTM, GRU and min cells' ``w_i``, ``w_h``, ``b``, ``b_h``; last axis ``g``, gates x
    hidden) are split over the ``model`` axis when ``g`` divides by its size; everything
    else (embeddings, heads, counters, other cells) is replicated. Optimizer states of optax hold
    params-shaped trees (adam's ``mu`` and ``nu``), which get the same shardings as the params.

    Args:
      tree: params or optimizer state (a pytree of arrays).
      mesh: from :func:`make_mesh`.

    Returns:
      A pytree of :class:`~jax.sharding.NamedSharding` with the structure of ``tree``.

    Example:
        >>> import jax, rnnjax as rj
        >>> params = rj.LSTMCell(8).init(jax.random.key(0), 3)
        >>> shardings = rj.parallel.param_shardings(params, rj.parallel.make_mesh(1))
        >>> shardings.w_h.spec
        P(None, 'model')
    """
    model_size = mesh.shape[MODEL]
    whole = replicated(mesh)

    def gate_sharding(leaf):
        ndim = np.ndim(leaf)
        if ndim == 0 or np.shape(leaf)[-1] % model_size:
            return whole
        return NamedSharding(mesh, P(*([None] * (ndim - 1)), MODEL))

    def node_shardings(node):
        if isinstance(node, GatedParams):
            fields = {
                name: jax.tree_util.tree_map(gate_sharding if name in node.gate_fields else (lambda _: whole), value)
                for name, value in node._asdict().items()
            }
            return type(node)(**fields)
        return jax.tree_util.tree_map(lambda _: whole, node)

    return jax.tree_util.tree_map(node_shardings, tree, is_leaf=lambda x: isinstance(x, GatedParams))


def _place(tree, shardings, *, for_jit=False):
    """``device_put`` the leaves whose sharding differs (a no-op for those already in place).

    ``for_jit``: leave to ``jit``'s ``in_shardings`` what it places itself (in one process: host
    arrays and uncommitted ones); only committed arrays elsewhere must move first.
    """
    jit_places = for_jit and jax.process_count() == 1

    def one(x, sharding):
        if jit_places and not (isinstance(x, jax.Array) and x.committed):
            return x
        if isinstance(x, jax.Array) and x.sharding == sharding:
            return x
        if isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            # a typed key moves as its raw data (device_put of a key onto other hosts' devices fails)
            return jax.random.wrap_key_data(
                jax.device_put(jax.random.key_data(x), sharding), impl=jax.random.key_impl(x)
            )
        return jax.device_put(x, sharding)

    return jax.tree_util.tree_map(one, tree, shardings)


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Place params or optimizer state on ``mesh`` (see :func:`param_shardings`).

    With a ``model`` axis of size 1 every leaf is fully replicated.

    Args:
      tree: a pytree of arrays.
      mesh: from :func:`make_mesh`.

    Returns:
      The same values as global :class:`jax.Array` s on the mesh's devices.

    Example:
        >>> import jax, rnnjax as rj
        >>> mesh = rj.parallel.make_mesh(1)
        >>> params = rj.parallel.replicate(rj.GRUCell(4).init(jax.random.key(0), 2), mesh)
        >>> params.w_i.sharding.mesh.shape == mesh.shape
        True
    """
    return _place(tree, param_shardings(tree, mesh))


def _check_batch(batch, divisor: int, what: str, name: str = "batch") -> int:
    """The common leading axis ``b`` of the leaves of ``batch`` (named ``name``), divisible by ``divisor``."""
    leaves = jax.tree_util.tree_leaves(batch)
    if not leaves:
        raise ValueError(f"{name}: expected a pytree with at least one array, got an empty one")
    sizes = {np.shape(leaf)[0] if np.ndim(leaf) else None for leaf in leaves}
    if None in sizes or len(sizes) != 1:
        shapes = [np.shape(leaf) for leaf in leaves]
        raise ValueError(f"{name}: expected every leaf to have the same leading batch axis b, got shapes {shapes}")
    (size,) = sizes
    if size % divisor:
        raise ValueError(
            f"{name}: the batch size {size} is not divisible by {what} = {divisor}; "
            f"use a batch size that is a multiple of {divisor} (or fewer devices)"
        )
    return size


def shard_batch(batch: Any, mesh: Mesh) -> Any:
    """Split a global batch along its leading axis over the mesh's ``data`` axis.

    On many hosts every process must pass the same global batch; to load only this host's rows,
    use :func:`process_local_batch` (or :func:`host_data`) instead.

    Args:
      batch: a pytree of arrays ``[b, ...]`` (NumPy or JAX), the same ``b`` for every leaf.
      mesh: from :func:`make_mesh`.

    Returns:
      The batch as global :class:`jax.Array` s sharded ``PartitionSpec("data")``.

    Raises:
      ValueError: a leaf without the common leading axis, or ``b`` not divisible by the
        size of the ``data`` axis (the message names ``batch`` and both sizes).

    Example:
        >>> import numpy as np, rnnjax as rj
        >>> batch = rj.parallel.shard_batch({"xs": np.zeros((4, 3))}, rj.parallel.make_mesh(1))
        >>> batch["xs"].sharding.spec
        P('data',)
    """
    _check_batch(batch, _data_size(mesh), "the number of devices on the mesh's data axis")
    sharding = batch_sharding(mesh)
    return _place(batch, jax.tree_util.tree_map(lambda _: sharding, batch))


# --- many hosts --------------------------------------------------------------------------------


def host_batch_slice(global_batch_size: int, mesh: Mesh) -> slice:
    """The rows of every global batch that this process loads (one host's shard of the batch).

    With ``P`` processes each owning a contiguous block of the mesh's ``data`` axis (what
    :func:`make_mesh` builds), process ``i`` gets rows ``[i b / P, (i + 1) b / P)``; on one host
    it is every row.

    Args:
      global_batch_size: ``b``, the batch size summed over all hosts.
      mesh: from :func:`make_mesh`.

    Returns:
      A ``slice`` of the leading batch axis.

    Raises:
      ValueError: ``b`` not divisible by the ``data`` axis, or this process's devices do not hold a
        contiguous block of rows.

    Example:
        >>> import rnnjax as rj
        >>> rj.parallel.host_batch_slice(32, rj.parallel.make_mesh(1))   # one host: all rows
        slice(0, 32, None)
    """
    checks.positive_int(global_batch_size, "global_batch_size")
    _check_batch(np.zeros((global_batch_size, 0)), _data_size(mesh), "the number of devices on the mesh's data axis")
    indices = batch_sharding(mesh).addressable_devices_indices_map((global_batch_size,))
    rows = sorted({(index[0].start or 0, index[0].stop or global_batch_size) for index in indices.values()})
    for (_, stop), (start, _) in zip(rows, rows[1:], strict=False):
        if stop != start:
            raise ValueError(f"mesh: the devices of process {jax.process_index()} do not hold contiguous batch rows")
    return slice(rows[0][0], rows[-1][1])


def process_local_batch(local_batch: Any, mesh: Mesh, global_batch_size: int | None = None) -> Any:
    """Assemble a global batch from the rows this process loaded (:func:`host_batch_slice`).

    Uses :func:`jax.make_array_from_process_local_data`: each process passes only its own rows and
    no data crosses hosts. On one host this is :func:`shard_batch`.

    Args:
      local_batch: a pytree of arrays ``[b / num_processes, ...]``: this host's rows.
      mesh: from :func:`make_mesh`.
      global_batch_size: ``b`` (None: ``b / num_processes`` times the number of processes).

    Returns:
      The global batch ``[b, ...]`` sharded ``PartitionSpec("data")``.

    Example:
        >>> import numpy as np, rnnjax as rj
        >>> mesh = rj.parallel.make_mesh(1)
        >>> rows = rj.parallel.host_batch_slice(8, mesh)
        >>> batch = rj.parallel.process_local_batch({"xs": np.arange(16.0).reshape(8, 2)[rows]}, mesh)
        >>> batch["xs"].shape
        (8, 2)
    """
    local_size = _check_batch(local_batch, 1, "1")
    if global_batch_size is None:
        global_batch_size = local_size * jax.process_count()
    expected = host_batch_slice(global_batch_size, mesh)
    if local_size != expected.stop - expected.start:
        raise ValueError(
            f"local_batch: expected the {expected.stop - expected.start} rows {expected} of the global batch of "
            f"{global_batch_size} that process {jax.process_index()} holds, got {local_size} rows"
        )
    sharding = batch_sharding(mesh)
    return jax.tree_util.tree_map(
        lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x), (global_batch_size, *x.shape[1:])),
        local_batch,
    )


def host_data(load: Callable[[int, slice], Any], mesh: Mesh, *, global_batch_size: int) -> Callable[[int], Any]:
    """Per-host data loading for :func:`rnnjax.train.fit`: each host loads only its shard of every batch.

    Args:
      load: ``load(step, rows) -> batch``: the rows ``rows`` (a ``slice``) of the global batch
        of step ``step``, as a pytree of arrays ``[rows, ...]``.
      mesh: from :func:`make_mesh`.
      global_batch_size: ``b``.

    Returns:
      ``data(step) -> batch``: the global batch ``[b, ...]``, sharded over ``data``.

    Example:
        >>> import numpy as np, rnnjax as rj
        >>> mesh = rj.parallel.make_mesh(1)
        >>> load = lambda step, rows: {"xs": np.full((8, 3), float(step))[rows]}
        >>> data = rj.parallel.host_data(load, mesh, global_batch_size=8)
        >>> data(2)["xs"].shape
        (8, 3)
    """
    rows = host_batch_slice(global_batch_size, mesh)

    def data(step: int):
        return process_local_batch(load(step, rows), mesh, global_batch_size)

    return data


# --- the train step ----------------------------------------------------------------------------


def _jit_on_mesh(single_device_step: Callable, mesh: Mesh, *, data_inputs: int, data_outputs: int) -> Callable:
    """``single_device_step(params, opt_state, *data, key) -> (params, opt_state, *data_out, metrics)`` over ``mesh``.

    Jitted again with shardings (GSPMD): params and optimizer state as :func:`param_shardings`
    says, the ``data_inputs`` arguments after them and the ``data_outputs`` results after them
    split over ``data`` (:func:`batch_sharding`), the key and the metrics replicated. Inputs not
    yet in place are moved onto the mesh; one compilation per structure and shapes of the params
    and optimizer state. The first ``data_outputs`` data inputs come back as outputs (a carry), so
    they are always placed here, never left to ``jit``: an input sharded on one call and on the
    default device on the next would trace the step twice.
    """
    whole, data_sharding = replicated(mesh), batch_sharding(mesh)
    compiled = {}

    def step(params, opt_state, *rest):
        *data, key = rest
        leaves, structure = jax.tree_util.tree_flatten((params, opt_state))
        signature = structure, tuple(np.shape(leaf) for leaf in leaves)
        if signature not in compiled:
            shardings = (param_shardings(params, mesh), param_shardings(opt_state, mesh))
            jitted = checks.checked_jit(
                single_device_step,
                in_shardings=(*shardings, *[data_sharding] * data_inputs, whole),
                out_shardings=(*shardings, *[data_sharding] * data_outputs, whole),
            )
            compiled[signature] = shardings, jitted
        (params_sharding, opt_state_sharding), sharded_step = compiled[signature]
        return sharded_step(
            _place(params, params_sharding),  # placed once: then the outputs of the last step are in place
            _place(opt_state, opt_state_sharding),
            *(
                _place(tree, jax.tree_util.tree_map(lambda _: data_sharding, tree), for_jit=i >= data_outputs)
                for i, tree in enumerate(data)
            ),
            _place(key, jax.tree_util.tree_map(lambda _: whole, key), for_jit=True),
        )

    return step


def make_data_parallel_train_step(
    loss_fn: Callable,
    optimizer: optax.GradientTransformation,
    mesh: Mesh,
    *,
    clip_norm: float | None = None,
    has_aux: bool = False,
    skip_nonfinite: bool = False,
):
    """:func:`rnnjax.train.make_train_step` over a mesh: the batch split over ``data``, params replicated.

    The single-device step is jitted again with ``in_shardings``/``out_shardings`` (GSPMD): XLA
    partitions the computation and all-reduces the gradient. Inputs are moved onto the mesh
    when they are not there already (host NumPy batches, params from ``init``, a restored
    checkpoint), so :func:`rnnjax.train.fit` drives this step unchanged. The loss must be a mean
    over the batch axis (as every rnnjax loss is): it is then the mean over the global batch.

    Args:
      loss_fn: ``loss_fn(params, batch, key) -> loss`` (or ``(loss, aux)`` with ``has_aux``), on
        the global batch, as for the single-device step.
      optimizer: an optax transformation.
      mesh: from :func:`make_mesh`.
      clip_norm: clip the global gradient norm (see :func:`rnnjax.train.make_train_step`).
      has_aux: whether ``loss_fn`` returns ``(loss, aux)``.
      skip_nonfinite: leave the state unchanged at a non-finite loss or gradient (see
        :func:`rnnjax.train.make_train_step`).

    Returns:
      ``step(params, opt_state, batch, key) -> (params, opt_state, metrics)``; params and
      optimizer state come back placed on the mesh (:func:`param_shardings`), metrics replicated.
      The batch size ``b`` must divide by the size of the ``data`` axis (else ``ValueError``
      naming ``batch``).

    Example:
        >>> import jax, jax.numpy as jnp, optax, rnnjax as rj
        >>> cell, optimizer = rj.GRUCell(8), optax.adam(1e-2)
        >>> def loss_fn(params, batch, key):
        ...     ys = jax.vmap(lambda x: rj.unroll(cell, params, x)[1])(batch["xs"])
        ...     return jnp.mean((ys[:, -1, 0] - batch["y"]) ** 2)
        >>> params = cell.init(jax.random.key(0), 2)
        >>> step = rj.parallel.make_data_parallel_train_step(loss_fn, optimizer, rj.parallel.make_mesh())
        >>> batch = {"xs": jnp.ones((4, 5, 2)), "y": jnp.ones(4)}
        >>> params, opt_state, metrics = step(params, optimizer.init(params), batch, jax.random.key(1))
        >>> sorted(metrics)
        ['grad_norm', 'loss']
    """
    single_device_step = train.make_train_step(
        loss_fn, optimizer, clip_norm=clip_norm, has_aux=has_aux, skip_nonfinite=skip_nonfinite
    )
    sharded_step = _jit_on_mesh(single_device_step, mesh, data_inputs=1, data_outputs=0)

    def step(params, opt_state, batch, key):
        _check_batch(batch, _data_size(mesh), "the number of devices on the mesh's data axis")
        return sharded_step(params, opt_state, batch, key)

    return step


def make_data_parallel_stateful_train_step(
    loss_fn: Callable,
    optimizer: optax.GradientTransformation,
    mesh: Mesh,
    *,
    clip_norm: float | None = None,
    skip_nonfinite: bool = False,
):
    """:func:`rnnjax.train.make_stateful_train_step` over a mesh: the batch and the carry split over ``data``.

    The stateful step carries the recurrent carry of every stream of the batch from one window
    to the next (truncated BPTT as char-rnn trains). Here the carry is batched like the data: each
    leaf has the leading axis ``b`` of the batch, and row ``i`` of the carry (the state of stream
    ``i``) lives on the device that holds row ``i`` of the batch, so the carry never moves
    between devices. Params and optimizer state are laid out as in
    :func:`make_data_parallel_train_step`, and the step gives the params, carry and loss of the
    single-device stateful step on the same batches, up to the order of floating-point sums.

    Args:
      loss_fn: ``loss_fn(params, carry, batch, key) -> (loss, new_carry)`` on the global batch,
        as for the single-device step: ``carry`` and ``new_carry`` batched ``[b, ...]`` (e.g.
        ``cell.initial_carry(params, (b,))`` to start), the loss a mean over the batch.
      optimizer: an optax transformation.
      mesh: from :func:`make_mesh`.
      clip_norm: clip the global gradient norm (see :func:`rnnjax.train.make_train_step`).
      skip_nonfinite: leave the state (and the carry) unchanged at a non-finite loss or gradient.

    Returns:
      ``step(params, opt_state, carry, batch, key) -> (params, opt_state, carry, metrics)``; the
      carry comes back split over ``data`` (``PartitionSpec("data")``), ready for the next window.
      ``b`` must divide by the size of the ``data`` axis, and every leaf of the carry must have the
      batch's ``b`` (else ``ValueError`` naming ``batch`` or ``carry``).

    Example:
        >>> import jax, jax.numpy as jnp, optax, rnnjax as rj
        >>> cell, optimizer = rj.LSTMCell(8), optax.sgd(0.1)
        >>> def loss_fn(params, carry, windows, key):          # windows [b, t, f], carry [b, ...]
        ...     carry, ys = jax.vmap(lambda c, xs: rj.unroll(cell, params, xs, c))(carry, windows)
        ...     return jnp.mean((ys - 1.0) ** 2), carry
        >>> params = cell.init(jax.random.key(0), 3)
        >>> step = rj.parallel.make_data_parallel_stateful_train_step(loss_fn, optimizer, rj.parallel.make_mesh())
        >>> streams = jnp.ones((4, 30, 3))                       # 4 streams, cut into 3 windows of 10
        >>> carry, opt_state = cell.initial_carry(params, (4,)), optimizer.init(params)
        >>> for i in range(3):
        ...     windows = streams[:, 10 * i : 10 * (i + 1)]
        ...     params, opt_state, carry, metrics = step(params, opt_state, carry, windows, jax.random.key(i))
        >>> carry.h.shape, carry.h.sharding.spec
        ((4, 8), P('data',))
    """
    single_device_step = train.make_stateful_train_step(
        loss_fn, optimizer, clip_norm=clip_norm, skip_nonfinite=skip_nonfinite
    )
    sharded_step = _jit_on_mesh(single_device_step, mesh, data_inputs=2, data_outputs=1)

    def step(params, opt_state, carry, batch, key):
        what = "the number of devices on the mesh's data axis"
        size = _check_batch(batch, _data_size(mesh), what)
        shapes = [np.shape(leaf) for leaf in jax.tree_util.tree_leaves(carry)]
        if any(shape[:1] != (size,) for shape in shapes):
            raise ValueError(
                f"carry: expected the leading batch axis b = {size} of the batch on every leaf (one carry per "
                f"stream, e.g. cell.initial_carry(params, ({size},))), got shapes {shapes}"
            )
        return sharded_step(params, opt_state, carry, batch, key)

    return step


def make_train_step(
    loss_fn: Callable,
    optimizer: optax.GradientTransformation,
    *,
    devices: int | None = None,
    clip_norm: float | None = None,
    has_aux: bool = False,
    skip_nonfinite: bool = False,
):
    """The train step for ``devices`` devices: the single-device step on 1, data-parallel on more.

    What ``rnnjax demo --devices N`` and the experiments' ``--devices N`` use, so that one script
    runs unchanged on a laptop, a multi-GPU host or a TPU pod.

    Args:
      loss_fn: ``loss_fn(params, batch, key) -> loss`` (or ``(loss, aux)`` with ``has_aux``).
      optimizer: an optax transformation.
      devices: how many of ``jax.devices()`` to use (None: all of them). With 1 this is
        :func:`rnnjax.train.make_train_step`; with more, :func:`make_data_parallel_train_step`
        over :func:`make_mesh` ``(devices)``, whose batch size must divide by ``devices``.
      clip_norm: clip the global gradient norm (see :func:`rnnjax.train.make_train_step`).
      has_aux: whether ``loss_fn`` returns ``(loss, aux)``.
      skip_nonfinite: leave the state unchanged at a non-finite loss or gradient (see
        :func:`rnnjax.train.make_train_step`).

    Returns:
      ``step(params, opt_state, batch, key) -> (params, opt_state, metrics)``.

    Example:
        >>> import jax.numpy as jnp, optax, rnnjax as rj
        >>> step = rj.parallel.make_train_step(lambda p, b, k: jnp.mean((p - b) ** 2), optax.sgd(0.1), devices=1)
        >>> params, _, metrics = step(jnp.zeros(3), optax.sgd(0.1).init(jnp.zeros(3)), jnp.ones((4, 3)), None)
        >>> round(float(metrics["loss"]), 3)
        1.0
    """
    mesh = make_mesh(devices)
    if mesh.size == 1:
        return train.make_train_step(
            loss_fn, optimizer, clip_norm=clip_norm, has_aux=has_aux, skip_nonfinite=skip_nonfinite
        )
    return make_data_parallel_train_step(
        loss_fn, optimizer, mesh, clip_norm=clip_norm, has_aux=has_aux, skip_nonfinite=skip_nonfinite
    )


def make_stateful_train_step(
    loss_fn: Callable,
    optimizer: optax.GradientTransformation,
    *,
    devices: int | None = None,
    clip_norm: float | None = None,
    skip_nonfinite: bool = False,
):
    """The stateful train step for ``devices`` devices: the single-device step on 1, data-parallel on more.

    Args:
      loss_fn: ``loss_fn(params, carry, batch, key) -> (loss, new_carry)``, carry batched ``[b, ...]``.
      optimizer: an optax transformation.
      devices: how many of ``jax.devices()`` to use (None: all of them). With 1 this is
        :func:`rnnjax.train.make_stateful_train_step`; with more,
        :func:`make_data_parallel_stateful_train_step` over :func:`make_mesh` ``(devices)``.
      clip_norm: clip the global gradient norm (see :func:`rnnjax.train.make_train_step`).
      skip_nonfinite: leave the state and the carry unchanged at a non-finite loss or gradient.

    Returns:
      ``step(params, opt_state, carry, batch, key) -> (params, opt_state, carry, metrics)``.

    Example:
        >>> import jax.numpy as jnp, optax, rnnjax as rj
        >>> def loss_fn(params, carry, batch, key):             # a running sum per row as the "carry"
        ...     carry = carry + jnp.sum(batch, axis=1)
        ...     return jnp.mean((params - carry[:, None]) ** 2), carry
        >>> step = rj.parallel.make_stateful_train_step(loss_fn, optax.sgd(0.1), devices=1)
        >>> params, opt_state = jnp.zeros(3), optax.sgd(0.1).init(jnp.zeros(3))
        >>> params, opt_state, carry, metrics = step(params, opt_state, jnp.zeros(4), jnp.ones((4, 2)), None)
        >>> carry.tolist()
        [2.0, 2.0, 2.0, 2.0]
    """
    mesh = make_mesh(devices)
    if mesh.size == 1:
        return train.make_stateful_train_step(loss_fn, optimizer, clip_norm=clip_norm, skip_nonfinite=skip_nonfinite)
    return make_data_parallel_stateful_train_step(
        loss_fn, optimizer, mesh, clip_norm=clip_norm, skip_nonfinite=skip_nonfinite
    )


def unreplicate(tree: Params) -> Params:
    """Gather arrays placed on a mesh into host NumPy arrays (e.g. to save or compare params).

    Args:
      tree: a pytree of (possibly sharded) arrays; on many hosts they must be fully addressable
        or replicated.

    Returns:
      The same pytree of NumPy arrays.

    Example:
        >>> import jax.numpy as jnp, rnnjax as rj
        >>> tree = rj.parallel.replicate({"w": jnp.ones(3)}, rj.parallel.make_mesh(1))
        >>> type(rj.parallel.unreplicate(tree)["w"]).__name__
        'ndarray'
    """
    return jax.tree_util.tree_map(np.asarray, jax.device_get(tree))
