"""rnnjax against its peers: LSTM and GRU forward and training-step speed, compile time and memory.

Every peer runs the same problem: a batch of sequences ``[b, t, f]`` through one recurrent
layer with hidden size ``h``, returning all outputs ``[b, t, h]``. "fwd" is the jitted forward
pass; "train" is one jitted training step (forward, backward through time and an Adam update)
on the mean squared error against a fixed target. Peers:

    rnnjax         jax.vmap(rj.unroll) over rj.LSTMCell / rj.GRUCell
    flax           nn.RNN(nn.LSTMCell) / nn.RNN(nn.GRUCell)        (flax linen)
    flax_opt       nn.RNN(nn.OptimizedLSTMCell)                     (LSTM only)
    haiku          hk.dynamic_unroll(hk.LSTM / hk.GRU)
    equinox        eqx.nn.LSTMCell / GRUCell under lax.scan, vmapped
    keras          keras.layers.LSTM / GRU on the JAX backend (stateless_call under jax.jit)
    torch          nn.LSTM / nn.GRU (CPU, oneDNN where torch has it), torch.optim.Adam

Configurations: S = batch 32, T 100, input 64, hidden 128; M = batch 64, T 200,
input 256, hidden 512; L = batch 16, T 2,000, input 128, hidden 256; and, for accelerators
(``benchmarks/gpu.py``), G = batch 256, T 256, input 512, hidden 1024.

Each (peer, cell, config) runs in a fresh process (torch's OpenMP threads and XLA's thread pool
slow each other down in one process), with the same thread count for all (all cores). Times
are the median of ``--repeats`` calls after two warm-up calls, with ``block_until_ready``.
Throughput is sequence-steps per second (``b * t / time``). Compile time is the first call's
time minus the median. Memory is the peak resident set size of the process after the run,
minus the resident size after imports (the same measure for every peer), and, for JAX peers,
XLA's temporary buffers of the compiled training step.

The practical limit: a single GEMM doing the same multiply-adds as the layer's matmuls
(``[b*t, f+h] @ [f+h, g*h]``) is timed on the same machine, and every row's achieved GFLOP/s
(matmul FLOPs only: ``2*b*t*(f+h)*g*h`` forward, three times that for a training step) is
given as a percentage of it.

    python benchmarks/peers.py                                   # S and M, all peers, LSTM and GRU
    python benchmarks/peers.py --configs S M L --repeats 7
    python benchmarks/peers.py --configs tiny --repeats 1        # smoke test
"""

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

CONFIGS = {
    "tiny": {"batch": 2, "steps": 5, "input": 3, "hidden": 4},
    "S": {"batch": 32, "steps": 100, "input": 64, "hidden": 128},
    "M": {"batch": 64, "steps": 200, "input": 256, "hidden": 512},
    "L": {"batch": 16, "steps": 2000, "input": 128, "hidden": 256},
    "G": {"batch": 256, "steps": 256, "input": 512, "hidden": 1024},
}
PEERS = ["rnnjax", "flax", "flax_opt", "haiku", "equinox", "keras", "torch"]
GATES = {"lstm": 4, "gru": 3}


class Missing(Exception):
    """A peer library that is not installed, or that has no such cell."""


def matmul_flops(config: dict, cell: str) -> float:
    """Multiply-add FLOPs of one forward pass: input and recurrent matmuls at every step."""
    b, t, f, h = config["batch"], config["steps"], config["input"], config["hidden"]
    return 2.0 * b * t * (f + h) * GATES[cell] * h


def rss_mib() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --- JAX peers: each returns (forward(params, xs), loss(params, xs, target), params) --------------


def jax_rnnjax(cell, config, key, unroll=None, dtype=None, param_dtype=None, fused=False):
    """rnnjax with its defaults, or with ``unroll=k``, the cell's ``dtype`` / ``param_dtype`` (names), or
    ``fused=True``: the hoisted path's fused Pallas kernel (rnnjax.kernels), where it supports the cell."""
    import jax

    import rnnjax as rj

    dtypes = {"dtype": dtype, "param_dtype": param_dtype}
    rj_cell = {"lstm": rj.LSTMCell, "gru": rj.GRUCell}[cell](
        config["hidden"], **{name: jax.numpy.dtype(value) for name, value in dtypes.items() if value}
    )
    params = rj_cell.init(key, config["input"])
    options = {} if unroll is None else {"unroll": unroll}
    if fused and not rj.kernels.supports(rj_cell, params.w_h.dtype):
        raise Missing(f"rnnjax.kernels does not run this cell (hidden {config['hidden']}, {params.w_h.dtype})")
    if fused:
        options["hoist"] = True

    def layer(params, xs):
        return jax.vmap(lambda x: rj.unroll(rj_cell, params, x, **options)[1])(xs)

    def forward(params, xs):
        if not fused:
            return layer(params, xs)
        # the table is read while jit traces unroll: on for this row's traces only
        table, backend = rj.recurrence.FUSED_KERNEL, jax.default_backend()
        before, table[backend] = table.get(backend, False), True
        try:
            return layer(params, xs)
        finally:
            table[backend] = before

    return forward, params


def jax_flax(cell, config, key, optimized=False):
    import flax.linen as nn

    if cell == "lstm":
        cell_type = nn.OptimizedLSTMCell if optimized else nn.LSTMCell
    elif optimized:
        raise Missing("flax has no optimized GRU cell")
    else:
        cell_type = nn.GRUCell
    model = nn.RNN(cell_type(config["hidden"]))
    xs = _zeros(config)
    params = model.init(key, xs)
    return model.apply, params


def jax_haiku(cell, config, key):
    try:
        import haiku as hk
    except ImportError as error:
        raise Missing("haiku (dm-haiku) is not installed") from error
    import jax.numpy as jnp

    def unroll(xs):
        core = {"lstm": hk.LSTM, "gru": hk.GRU}[cell](config["hidden"])
        carry = core.initial_state(xs.shape[0])
        ys, _ = hk.dynamic_unroll(core, jnp.swapaxes(xs, 0, 1), carry)  # haiku scans time-major
        return jnp.swapaxes(ys, 0, 1)

    model = hk.without_apply_rng(hk.transform(unroll))
    params = model.init(key, _zeros(config))
    return model.apply, params


def jax_equinox(cell, config, key):
    try:
        import equinox as eqx
    except ImportError as error:
        raise Missing("equinox is not installed") from error
    import jax
    import jax.numpy as jnp

    eqx_cell = {"lstm": eqx.nn.LSTMCell, "gru": eqx.nn.GRUCell}[cell](config["input"], config["hidden"], key=key)

    def forward(eqx_cell, xs):
        def one_sequence(x):
            h = jnp.zeros(config["hidden"])
            carry = (h, h) if cell == "lstm" else h

            def body(carry, x_t):
                carry = eqx_cell(x_t, carry)
                return carry, carry[0] if cell == "lstm" else carry

            return jax.lax.scan(body, carry, x)[1]

        return jax.vmap(one_sequence)(xs)

    return forward, eqx_cell


def jax_cudnn_rnn(cell, config, key):
    """``jax.experimental.rnn.lstm``: cuDNN's LSTM (double bias), GPU only."""
    import jax
    import jax.numpy as jnp
    from jax.experimental import rnn

    if cell != "lstm":
        raise Missing("jax.experimental.rnn has an LSTM only")
    if jax.default_backend() != "gpu":
        raise Missing(f"jax.experimental.rnn runs on cuDNN (GPU) only, not {jax.default_backend()}")
    f, h = config["input"], config["hidden"]
    weights = rnn.init_lstm_weight(key, f, h, 1, False)

    def forward(weights, xs):
        zeros = jnp.zeros((1, xs.shape[0], h), xs.dtype)
        lengths = jnp.full((xs.shape[0],), xs.shape[1], jnp.int32)
        options = {"input_size": f, "hidden_size": h, "num_layers": 1, "dropout": 0.0, "bidirectional": False}
        return rnn.lstm(xs, zeros, zeros, weights, lengths, **options)[0]

    return forward, weights


def jax_keras(cell, config, key):
    os.environ.setdefault("KERAS_BACKEND", "jax")
    try:
        import keras
    except ImportError as error:
        raise Missing("keras is not installed") from error
    if keras.backend.backend() != "jax":
        raise Missing(f"keras runs on the {keras.backend.backend()} backend, not jax")
    layer_type = {"lstm": keras.layers.LSTM, "gru": keras.layers.GRU}[cell]
    inputs = keras.Input((config["steps"], config["input"]), batch_size=config["batch"])
    model = keras.Model(inputs, layer_type(config["hidden"], return_sequences=True)(inputs))
    params = [v.value for v in model.trainable_variables]
    frozen = [v.value for v in model.non_trainable_variables]  # the layer's seed generator state

    def forward(params, xs):
        ys, _ = model.stateless_call(params, frozen, xs)
        return ys

    return forward, params


def _zeros(config):
    import jax.numpy as jnp

    return jnp.zeros((config["batch"], config["steps"], config["input"]))


JAX_PEERS = {
    "rnnjax": jax_rnnjax,
    "flax": jax_flax,
    "flax_opt": lambda cell, config, key: jax_flax(cell, config, key, optimized=True),
    "haiku": jax_haiku,
    "equinox": jax_equinox,
    "keras": jax_keras,
    "jax_rnn": jax_cudnn_rnn,  # GPU only: benchmarks/gpu.py
}


def time_calls(fn, args, repeats: int, sync) -> dict:
    """First-call time, then the median and minimum of ``repeats`` calls after two warm-ups."""
    t0 = time.perf_counter()
    sync(fn(*args))
    first = time.perf_counter() - t0
    sync(fn(*args))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        sync(fn(*args))
        times.append(time.perf_counter() - t0)
    median = statistics.median(times)
    return {"ms": 1e3 * median, "min_ms": 1e3 * min(times), "compile_s": max(first - median, 0.0)}


def run_jax(peer: str, cell: str, config: dict, repeats: int, **options) -> dict:
    """Times the forward pass and the training step of a JAX peer; ``options`` go to its builder."""
    import jax
    import jax.numpy as jnp
    import optax

    keys = jax.random.split(jax.random.key(0), 3)
    forward, params = JAX_PEERS[peer](cell, config, keys[0], **options)
    xs = jax.random.normal(keys[1], (config["batch"], config["steps"], config["input"]))
    target = jax.random.normal(keys[2], (config["batch"], config["steps"], config["hidden"]))
    optimizer = optax.adam(1e-3)

    def loss_fn(params, xs, target):
        return jnp.mean((forward(params, xs) - target) ** 2)

    if peer == "equinox":  # the model is the params: differentiate its array leaves only
        import equinox as eqx

        grad_fn = eqx.filter_value_and_grad(loss_fn)
        opt_state = optimizer.init(eqx.filter(params, eqx.is_array))

        @eqx.filter_jit
        def train_step(params, opt_state, xs, target):
            loss, grads = grad_fn(params, xs, target)
            updates, opt_state = optimizer.update(grads, opt_state, eqx.filter(params, eqx.is_array))
            return eqx.apply_updates(params, updates), opt_state, loss

        fwd = eqx.filter_jit(forward)
    else:
        opt_state = optimizer.init(params)

        @jax.jit
        def train_step(params, opt_state, xs, target):
            loss, grads = jax.value_and_grad(loss_fn)(params, xs, target)
            updates, opt_state = optimizer.update(grads, opt_state, params)
            return optax.apply_updates(params, updates), opt_state, loss

        fwd = jax.jit(forward)

    rss_before = rss_mib()
    row = {
        "fwd": time_calls(fwd, (params, xs), repeats, jax.block_until_ready),
        "train": time_calls(train_step, (params, opt_state, xs, target), repeats, jax.block_until_ready),
    }
    if peer != "equinox":
        memory = train_step.lower(params, opt_state, xs, target).compile().memory_analysis()
        row["train"]["xla_temp_mib"] = memory.temp_size_in_bytes / 2**20
    row["peak_rss_growth_mib"] = peak_rss_mib() - rss_before
    return row


def run_torch(cell: str, config: dict, repeats: int, device: str = "cpu", dtype: str = "float32") -> dict:
    """torch's nn.LSTM / nn.GRU: on the CPU with all cores, or on CUDA (cuDNN) with TF32 allowed."""
    try:
        import torch
    except ImportError as error:
        raise Missing("torch is not installed") from error
    if device == "cuda":
        if not torch.cuda.is_available():
            raise Missing(f"torch {torch.__version__} has no CUDA device (a CPU build?): install a CUDA build")
        torch.backends.cuda.matmul.allow_tf32 = True  # like-for-like with JAX's default float32 matmul on GPU
        torch.backends.cudnn.allow_tf32 = True

        def sync(out):
            torch.cuda.synchronize()

    else:
        torch.set_num_threads(os.cpu_count())

        def sync(out):  # torch on CPU is synchronous
            return out

    torch.manual_seed(0)
    kind = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell]
    tensor = {"device": device, "dtype": getattr(torch, dtype)}
    layer = kind(config["input"], config["hidden"], batch_first=True, **tensor)
    xs = torch.randn(config["batch"], config["steps"], config["input"], **tensor)
    target = torch.randn(config["batch"], config["steps"], config["hidden"], **tensor)
    optimizer = torch.optim.Adam(layer.parameters(), lr=1e-3)

    def forward(xs):
        with torch.no_grad():
            return layer(xs)[0]

    def train_step(xs, target):
        optimizer.zero_grad(set_to_none=True)
        loss = torch.mean((layer(xs)[0] - target) ** 2)
        loss.backward()
        optimizer.step()
        return loss

    rss_before = rss_mib()
    row = {
        "fwd": time_calls(forward, (xs,), repeats, sync),
        "train": time_calls(train_step, (xs, target), repeats, sync),
        "threads": torch.get_num_threads(),
        "mkldnn": torch.backends.mkldnn.is_available(),
    }
    if device == "cuda":
        row.update(tf32=True, cudnn=torch.backends.cudnn.version(), device_name=torch.cuda.get_device_name())
    row["peak_rss_growth_mib"] = peak_rss_mib() - rss_before
    return row


def run_gemm(cell: str, config: dict, repeats: int) -> dict:
    """One GEMM with the layer's forward matmul FLOPs: ``[b*t, f+h] @ [f+h, g*h]``."""
    import jax

    b, t, f, h = config["batch"], config["steps"], config["input"], config["hidden"]
    keys = jax.random.split(jax.random.key(0))
    a = jax.random.normal(keys[0], (b * t, f + h))
    w = jax.random.normal(keys[1], (f + h, GATES[cell] * h))
    timing = time_calls(jax.jit(lambda a, w: a @ w), (a, w), max(repeats, 7), jax.block_until_ready)
    return {"gemm": timing, "gemm_gflops": matmul_flops(config, cell) / timing["ms"] / 1e6}


def worker(peer: str, cell: str, config_name: str, repeats: int) -> dict:
    config = CONFIGS[config_name]
    if peer == "gemm":
        return run_gemm(cell, config, repeats)
    if peer == "torch":
        return run_torch(cell, config, repeats)
    return run_jax(peer, cell, config, repeats)


def run_in_subprocess(peer: str, cell: str, config_name: str, repeats: int, timeout: float) -> dict:
    command = [sys.executable, __file__, "--worker", peer, cell, config_name, "--repeats", str(repeats)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"status": "timeout", "error": f"no result in {timeout:.0f} s"}
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        return {"status": "failed", "error": last_error(done.stderr)}
    return json.loads(lines[-1])


def last_error(stderr: str) -> str:
    """The line of a dead process's stderr that says why: its last line naming an error, else its last line."""
    errors = [line for line in stderr.splitlines() if "Error" in line or "error" in line]
    return (errors or stderr.strip().splitlines() or ["(no output)"])[-1]


def summarise(row: dict, config: dict, cell: str, gemm_gflops: float | None) -> dict:
    seq_steps = config["batch"] * config["steps"]
    flops = matmul_flops(config, cell)
    for mode, factor in (("fwd", 1), ("train", 3)):
        timing = row[mode]
        timing["ksteps_per_s"] = seq_steps / timing["ms"]  # thousands of sequence-steps per second
        timing["gflops"] = factor * flops / timing["ms"] / 1e6
        if gemm_gflops:
            timing["gemm_percent"] = 100 * timing["gflops"] / gemm_gflops
    return row


def print_table(results: list[dict]) -> None:
    for config_name in dict.fromkeys(r["config"] for r in results):
        for cell in dict.fromkeys(r["cell"] for r in results):
            rows = [r for r in results if r["config"] == config_name and r["cell"] == cell]
            if not rows:
                continue
            ours = next((r for r in rows if r["peer"] == "rnnjax" and r["status"] == "ok"), None)
            gemm = next((r for r in rows if r["peer"] == "gemm" and r["status"] == "ok"), None)
            limit = f", GEMM limit {gemm['gemm_gflops']:.0f} GF/s" if gemm else ""
            print(f"\n{cell.upper()} {config_name} {CONFIGS[config_name]}{limit}")
            print(
                f"{'peer':>9} {'fwd ms':>9} {'train ms':>9} {'fwd k/s':>8} {'train k/s':>9} "
                f"{'fwd %GEMM':>9} {'train %GEMM':>11} {'rnnjax/peer fwd':>15} {'train':>6} "
                f"{'compile s':>9} {'mem MiB':>8}"
            )
            for r in rows:
                if r["peer"] == "gemm":
                    continue
                if r["status"] != "ok":
                    print(f"{r['peer']:>9} {r['status']}: {r.get('error')}")
                    continue
                fwd, train = r["fwd"], r["train"]
                ratio_fwd = ours["fwd"]["ksteps_per_s"] / fwd["ksteps_per_s"] if ours else float("nan")
                ratio_train = ours["train"]["ksteps_per_s"] / train["ksteps_per_s"] if ours else float("nan")
                print(
                    f"{r['peer']:>9} {fwd['ms']:>9.2f} {train['ms']:>9.2f} {fwd['ksteps_per_s']:>8.0f} "
                    f"{train['ksteps_per_s']:>9.0f} {fwd.get('gemm_percent', float('nan')):>9.0f} "
                    f"{train.get('gemm_percent', float('nan')):>11.0f} {ratio_fwd:>15.2f} {ratio_train:>6.2f} "
                    f"{fwd['compile_s'] + train['compile_s']:>9.2f} {r['peak_rss_growth_mib']:>8.0f}"
                )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", default=["S", "M"], choices=sorted(CONFIGS))
    parser.add_argument("--cells", nargs="+", default=["lstm", "gru"], choices=sorted(GATES))
    parser.add_argument("--peers", nargs="+", default=PEERS, choices=PEERS)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--rounds", type=int, default=1, help="run every row this many times; keep the fastest")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per row")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "peers.json")
    parser.add_argument("--worker", nargs=3, metavar=("PEER", "CELL", "CONFIG"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        peer, cell, config_name = args.worker
        try:
            row = {"status": "ok", **worker(peer, cell, config_name, args.repeats)}
        except Missing as missing:
            row = {"status": "missing", "error": str(missing)}
        print(json.dumps(row))
        return

    results = []
    for config_name in args.configs:
        config = CONFIGS[config_name]
        for cell in args.cells:
            gemm = run_in_subprocess("gemm", cell, config_name, args.repeats, args.timeout)
            gemm_gflops = gemm.get("gemm_gflops")
            results.append({"peer": "gemm", "cell": cell, "config": config_name, **gemm})
            for peer in args.peers:
                best = None
                for _ in range(args.rounds):
                    row = run_in_subprocess(peer, cell, config_name, args.repeats, args.timeout)
                    if best is None or (row["status"] == "ok" and row["train"]["ms"] < best["train"]["ms"]):
                        best = row
                if best["status"] == "ok":
                    summarise(best, config, cell, gemm_gflops)
                results.append({"peer": peer, "cell": cell, "config": config_name, **best})
                print(f"{config_name} {cell} {peer}: {best['status']}", file=sys.stderr, flush=True)

    print_table(results)
    import jax

    report = {
        "benchmark": "peers",
        "configs": {name: CONFIGS[name] for name in args.configs},
        "repeats": args.repeats,
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(), "jax": jax.__version__},
        "rows": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
