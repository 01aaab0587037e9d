"""rnnjax on one GPU, in one command: peers, unroll, bf16, parallel scan, decoding (and the test suite).

    python benchmarks/gpu.py                  # at most about 6 minutes on one GPU; writes benchmarks/results/gpu.json
    python benchmarks/gpu.py --tests          # the repository's test suite on the GPU first, then the benchmark
    python benchmarks/gpu.py --tests-only     # the test suite only (added to gpu.json of the same commit)
    python benchmarks/gpu.py --tiny --device cpu --quick   # a smoke run on the CPU (a minute or two)
    python benchmarks/gpu.py --sections custom_vjp unroll  # only these sections, in this order
    python benchmarks/gpu.py --merge a.json b.json         # runs of one commit on one machine, into one gpu.json

A run on the CPU or with --tiny writes benchmarks/results/gpu_smoke.json instead (not shown in the docs).

ms per call, median of --repeats calls after warm-up (``block_until_ready``;
``torch.cuda.synchronize``). fwd = the jitted forward pass over the batch returning every output
``[b, t, h]``; train = forward, BPTT and an Adam step on the mean squared error against a fixed
target. compile_s = the first call's time minus the median. Configurations: S = batch 32, T 100,
input 64, hidden 128; M = batch 64, T 200, input 256, hidden 512; L = batch 16, T 2,000, input 128,
hidden 256; G = batch 256, T 256, input 512, hidden 1024. Rows, LSTM and GRU at each:

    peers          rnnjax with its defaults (jax.vmap(lambda x: rj.unroll(cell, params, x)[1])),
                   flax linen nn.RNN(nn.OptimizedLSTMCell / nn.GRUCell), equinox (cells under
                   lax.scan, vmapped), jax.experimental.rnn (cuDNN, LSTM only, GPU only), and torch
                   nn.LSTM / nn.GRU on CUDA with TF32 allowed (JAX's default float32 matmul on a
                   recent NVIDIA GPU is TF32, so that is the like-for-like row)
    unroll         rj.unroll(..., unroll=k), k = 1, 8, 32 (1, 8 at L and G; 32 there last, if time is left)
    bf16           rj.LSTMCell(h, dtype=bfloat16) with float32 params; also param_dtype=bfloat16;
                   torch with the module and data in bfloat16
    parallel_scan  rj.MinGRUCell / rj.MinLSTMCell, unroll(parallel=True) against sequential (and an LSTM),
                   batch 16, input 64, hidden 128, T = 256, 1024, 4096 (benchmarks/parallel_scan.py)
    decode         tokens/s of an LSTM language model (vocab 96, hidden 512, batch 32, 64 tokens):
                   greedy and beam search 1, 2, 4, 8, vmapped (benchmarks/decode.py)
    custom_vjp     the recurrent weight's gradient as one GEMM after the backward scan against autodiff's
                   in-loop one: rnnjax's hoisted path with recurrence.DEFER_WEIGHT_GRADIENT on and off
                   (LSTM and GRU), and a hand-written custom VJP of a batched LSTM (benchmarks/custom_vjp.py;
                   issue 14, item 4)
    fused          rnnjax's LSTM and GRU with the whole time loop (and the backward loop) in one Pallas
                   kernel, recurrence.FUSED_KERNEL on (rnnjax.kernels; hidden sizes up to 128: S only),
                   against rnnjax's defaults measured next to it, and torch from the peers section (issue 14,
                   item 9)

The rows run in worker processes, JAX in one and torch in another (never both in one process);
a row that does not finish within --row-timeout seconds is killed (its worker is restarted for
the rows after it), and rows still waiting when the --budget is spent are recorded as skipped, so
the most important rows come first (peers, bf16, parallel scan, decoding, the custom VJP, the fused
kernels, the unroll sweep); --sections runs only some sections, in the order given, so that a second
short run can measure what the first left out, and --merge puts such runs together (a row measured in
several runs keeps the first run's timings and lists the others' under "repeats"). A
peer that is not installed or fails becomes a row with its status and message. The JSON holds the
machine (device, jax/jaxlib/torch/cuDNN versions, git commit) and every row; the last thing printed
is the ratio table (torch/rnnjax and flax/rnnjax: > 1 means rnnjax is faster). benchmarks/report.py
renders the JSON into docs/performance.md.
"""

import argparse
import json
import os
import platform
import queue
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import peers

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CELLS = ("lstm", "gru")
GPU_CONFIGS = ("S", "M", "L", "G")
UNROLLS = {"L": (1, 8), "G": (1, 8)}  # others: (1, 8, 32)
LATE_UNROLLS = {"L": (32,), "G": (32,)}  # long compiles at these sizes: measured last, if the budget allows
FLAX = {"lstm": ("flax_opt", "nn.OptimizedLSTMCell"), "gru": ("flax", "nn.GRUCell")}
SIZES = {  # the parallel-scan and decoding settings; --tiny takes the second
    "parallel_scan": (
        {"batch": 16, "input_size": 64, "hidden_size": 128, "steps": [256, 1024, 4096]},
        {"batch": 2, "input_size": 3, "hidden_size": 4, "steps": [8, 16]},
    ),
    "decode": (
        {"vocab": 96, "embed": 64, "hidden": 512, "batch": 32, "max_len": 64, "beams": [1, 2, 4, 8]},
        {"vocab": 11, "embed": 4, "hidden": 8, "batch": 2, "max_len": 4, "beams": [1, 2]},
    ),
}
FUSED = "rnnjax fused kernel"
FUSED_MAX_HIDDEN = 128  # = rnnjax.kernels.MAX_HIDDEN (this process does not import jax; a test checks)
PARALLEL_SCAN_VARIANTS = ("mingru sequential", "mingru parallel", "minlstm sequential", "minlstm parallel")
PARALLEL_SCAN_VARIANTS += ("lstm sequential",)  # = parallel_scan.VARIANTS (that module imports jax)


# --- the jobs: one row each, in the order they run ------------------------------------------------------


def plan(configs, cells, device: str, tiny: bool, sections=None) -> tuple[list[dict], list[dict], list[dict]]:
    """(torch jobs, JAX jobs, rows that are not run), the JAX jobs in order of importance: peers, bf16,
    parallel scan, decoding, the custom VJP, the fused kernels, the unroll sweep, and last the unroll factors
    that compile long; only those of ``sections`` (default: all), in the order ``sections`` lists them."""
    torch_jobs, jax_jobs, not_run, sweep, late = [], [], [], [], []
    pairs = [(config, cell) for config in configs for cell in cells]
    for section, dtype in (("peers", "float32"), ("bf16", "bfloat16")):
        torch_jobs += [job(section, "torch", config, cell, dtype=dtype) for config, cell in pairs]
    for config, cell in pairs:
        flax_peer, flax_cell = FLAX[cell]
        jax_jobs += [job("peers", "rnnjax", config, cell), job("peers", "flax", config, cell, peer=flax_peer)]
        jax_jobs[-1]["impl"] = flax_cell
        if cell == "lstm":
            cudnn = job("peers", "jax.experimental.rnn", config, cell, peer="jax_rnn")
            if device == "gpu":
                jax_jobs.append(cudnn)
            else:
                not_run.append({**cudnn, "status": "skipped", "error": "cuDNN's LSTM: GPU only"})
        jax_jobs.append(job("peers", "equinox", config, cell))
    for config, cell in pairs:
        jax_jobs.append(job("bf16", "rnnjax", config, cell, dtype="bfloat16"))
        bf16_params = {"dtype": "bfloat16", "param_dtype": "bfloat16"}
        jax_jobs.append(job("bf16", "rnnjax bf16 params", config, cell, peer="rnnjax", **bf16_params))
        sweep += [job("unroll", "rnnjax", config, cell, unroll=k) for k in UNROLLS.get(config, (1, 8, 32))]
        late += [job("unroll", "rnnjax", config, cell, unroll=k) for k in LATE_UNROLLS.get(config, ())]
    custom = [{"section": "custom_vjp", "config": config, "cell": cell} for config, cell in pairs]
    fused = [
        one
        for config, cell in pairs
        if peers.CONFIGS[config]["hidden"] <= FUSED_MAX_HIDDEN
        for one in (job("fused", "rnnjax", config, cell), job("fused", FUSED, config, cell, peer="rnnjax", fused=True))
    ]
    jax_jobs += parallel_scan_and_decode_jobs(tiny) + custom + fused + sweep + late
    if sections is not None:  # only these, and in this order (each section's own order kept)
        chosen = (
            sorted((one for one in jobs if one["section"] in sections), key=lambda one: sections.index(one["section"]))
            for jobs in (torch_jobs, jax_jobs, not_run)
        )
        torch_jobs, jax_jobs, not_run = chosen
    return torch_jobs, jax_jobs, not_run


def job(section: str, name: str, config: str, cell: str, peer: str | None = None, **options) -> dict:
    """A peer/bf16/unroll row: ``peer`` names the builder in peers.py (default: the name)."""
    return {"section": section, "name": name, "config": config, "cell": cell, "peer": peer or name, "options": options}


def parallel_scan_and_decode_jobs(tiny: bool) -> list[dict]:
    scan, decode = (SIZES[name][tiny] for name in ("parallel_scan", "decode"))
    jobs = [
        {"section": "parallel_scan", "variant": variant, "steps": steps}
        for steps in scan["steps"]
        for variant in PARALLEL_SCAN_VARIANTS
    ]
    decoders = [("greedy", None)] + [(f"beam {beam}", beam) for beam in decode["beams"]]
    return jobs + [{"section": "decode", "decoder": name, "beam": beam} for name, beam in decoders]


# --- the worker processes ---------------------------------------------------------------------------------


def worker_main(kind: str) -> None:
    """Run the jobs given as JSON on stdin; print ``READY {machine}``, then ``ROW {result}`` per job."""
    spec = json.loads(sys.stdin.read())
    run = run_torch_job if kind == "torch" else jax_runner(spec)
    print("READY " + json.dumps(torch_machine() if kind == "torch" else jax_machine()), flush=True)
    for index, one in enumerate(spec["jobs"]):
        try:
            row = {"status": "ok", **run(one, spec)}
        except (peers.Missing, ImportError) as missing:
            row = {"status": "missing", "error": str(missing)}
        except Exception as error:  # a failing peer is a row, never the end of the run
            row = {"status": "failed", "error": f"{type(error).__name__}: {str(error).strip()[:400]}"}
        print("ROW " + json.dumps({"index": index, **row}), flush=True)


def jax_machine() -> dict:
    import jax
    import jaxlib

    device = jax.devices()[0]
    return {
        "backend": jax.default_backend(),
        "device_kind": device.device_kind,
        "device_count": jax.device_count(),
        "platform_version": getattr(device.client, "platform_version", None),
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
    }


def torch_machine() -> dict:
    try:
        import torch
    except ImportError:
        return {"torch": None}
    cuda = torch.cuda.is_available()
    return {
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if cuda else None,
        "torch_device": torch.cuda.get_device_name() if cuda else "cpu",
    }


def run_torch_job(one: dict, spec: dict) -> dict:
    config = peers.CONFIGS[one["config"]]
    device = "cuda" if spec["device"] == "gpu" else "cpu"
    return peers.run_torch(one["cell"], config, spec["repeats"], device=device, **one["options"])


def jax_runner(spec: dict):
    """The JAX worker's job runner (imports jax and the benchmark modules that use it)."""
    import types

    import custom_vjp
    import decode
    import jax
    import parallel_scan

    if spec["device"] == "gpu" and jax.default_backend() != "gpu":
        raise SystemExit(f"jax has no GPU here (backend {jax.default_backend()})")
    scan_size, decode_size = (SIZES[name][spec["tiny"]] for name in ("parallel_scan", "decode"))
    model = []  # the decoding model, made once

    def run(one: dict, spec: dict) -> dict:
        if one["section"] == "parallel_scan":
            scan_args = types.SimpleNamespace(**scan_size, repeats=spec["repeats"])
            return parallel_scan.measure(one["variant"], one["steps"], scan_args)
        if one["section"] == "custom_vjp":
            return {"grad": custom_vjp.measure(peers.CONFIGS[one["config"]], spec["repeats"], one.get("cell", "lstm"))}
        if one["section"] == "decode":
            size = {k: decode_size[k] for k in ("vocab", "embed", "hidden", "batch")}
            model[:] = model or [decode.setup(**size)]
            return decode.measure(one["beam"], model[0], max_len=decode_size["max_len"], repeats=spec["repeats"])
        config = peers.CONFIGS[one["config"]]
        row = peers.run_jax(one["peer"], one["cell"], config, spec["repeats"], **one["options"])
        if one["peer"] == "rnnjax" and "unroll" not in one["options"] and not one["options"].get("fused"):
            row["default_unroll"] = rnnjax_default_unroll(config["steps"])
        return row

    return run


def rnnjax_default_unroll(steps: int):
    """The scan unroll factor rnnjax chooses by default here, where the library says (None otherwise)."""
    from rnnjax import recurrence

    chooser = getattr(recurrence, "default_unroll", None)
    return chooser(steps) if chooser else None


class Worker:
    """A worker process of one kind ("jax" or "torch") over a list of jobs, read line by line."""

    def __init__(self, kind: str, spec: dict, env: dict):
        self.stderr = tempfile.TemporaryFile(mode="w+")
        self.process = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--worker", kind],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            text=True,
            env=env,
            cwd=ROOT,
            start_new_session=True,  # its own process group: a timeout ends it and its children
        )
        self.process.stdin.write(json.dumps(spec))
        self.process.stdin.close()
        self.lines = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.process.stdout:
            if line.startswith(("READY ", "ROW ")):
                self.lines.put(line)
        self.lines.put(None)

    def next(self, timeout: float) -> tuple[str, dict | None]:
        """("READY" | "ROW", payload), ("timeout", None) or ("exit", None)."""
        try:
            line = self.lines.get(timeout=max(timeout, 0.01))
        except queue.Empty:
            return "timeout", None
        if line is None:
            return "exit", None
        tag, payload = line.split(" ", 1)
        return tag, json.loads(payload)

    def error(self) -> str:
        self.process.wait()
        self.stderr.seek(0)
        return f"worker exited ({self.process.returncode}): {peers.last_error(self.stderr.read())}"

    def stop(self):
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        self.stderr.close()


class Runner:
    """Runs jobs in workers with a per-row timeout and an overall deadline; collects the rows."""

    def __init__(self, args, env: dict, started: float):
        self.args, self.env, self.started = args, env, started
        self.deadline = started + args.budget
        self.machine: dict = {}

    def run(self, kind: str, jobs: list[dict]) -> list[dict]:
        rows, pending = [], list(jobs)
        while pending:
            if time.monotonic() >= self.deadline:
                rows += [self.out_of_time(one) for one in pending]
                break
            spec = {"device": self.args.device, "tiny": self.args.tiny, "repeats": self.args.repeats, "jobs": pending}
            worker = Worker(kind, spec, self.env)
            try:
                tag, machine = worker.next(min(self.args.startup_timeout, self.deadline - time.monotonic()))
                if tag == "timeout" and time.monotonic() >= self.deadline:
                    rows += [self.out_of_time(one) for one in pending]
                    break
                if tag != "READY":
                    why = worker.error() if tag == "exit" else f"the {kind} worker did not start in time"
                    rows += [{**one, "status": "failed", "error": why} for one in pending]
                    break
                self.machine.update(machine)
                done = self.collect(worker, pending, rows)
            finally:
                worker.stop()
            pending = pending[done:]
        return rows

    def collect(self, worker: Worker, pending: list[dict], rows: list[dict]) -> int:
        """Rows from a started worker until it ends or one times out; returns how many jobs are settled."""
        for done, one in enumerate(pending):
            left = self.deadline - time.monotonic()
            tag, result = worker.next(min(self.args.row_timeout, left))
            if tag == "ROW":
                result.pop("index")
                row = {**one, **result}
            elif tag == "timeout" and left <= self.args.row_timeout:
                row = self.out_of_time(one)
            elif tag == "timeout":
                row = {**one, "status": "timeout", "error": f"no result in {self.args.row_timeout:.0f} s"}
            else:
                row = {**one, "status": "failed", "error": worker.error()}
            rows.append(row)
            self.progress(row)
            if tag != "ROW":
                return done + 1
        return len(pending)

    def out_of_time(self, one: dict) -> dict:
        return {**one, "status": "skipped", "error": f"the time budget ({self.args.budget:.0f} s) was spent"}

    def progress(self, row: dict) -> None:
        keys = ("section", "config", "cell", "name", "variant", "steps", "decoder")
        what = " ".join(str(row[k]) for k in keys if k in row)
        if "unroll" in row.get("options", {}):
            what += f" unroll {row['options']['unroll']}"
        if row["status"] != "ok":
            result = f"{row['status']}: {row['error']}"
        elif "fwd" in row:
            result = f"{row['fwd']['ms']:.3f} / {row['train']['ms']:.3f} ms (compile {row['train']['compile_s']:.1f} s)"
        elif "fwd_ms" in row:
            result = f"{row['fwd_ms']:.3f} / {row['grad_ms']:.3f} ms"
        elif "grad" in row:
            result = ", ".join(f"{name} {r['ms']:.3f} ms" for name, r in row["grad"].items())
        else:
            result = f"{row['tokens_per_s']:,.0f} tokens/s"
        print(f"[{time.monotonic() - self.started:5.0f} s] {what}: {result}", file=sys.stderr, flush=True)


# --- the test suite ---------------------------------------------------------------------------------------


def run_tests(env: dict, timeout: float, log: Path | None = None, paths=("tests/", "rnnjax/")) -> dict:
    """The repository's test suite under xdist (a worker per core, two cores left); counts and the ids of what
    failed. At ``timeout`` pytest is interrupted (SIGINT), so it still prints what failed in the tests it ran.
    ``-rA`` puts every test's outcome in the log, so a later run can take the tests that this one did not reach;
    ``--durations=25`` shows where the suite's time goes on the device."""
    workers = str(max(1, min(14, (os.cpu_count() or 1) - 2)))
    command = [sys.executable, "-m", "pytest", "-n", workers, "-p", "no:benchmark", "-q", "-rA", "--durations=25"]
    command += list(paths)
    env = {**env, "XLA_PYTHON_CLIENT_PREALLOCATE": "false"}  # pytest's workers share the GPU
    print(f"running the test suite: {' '.join(command[1:])}", file=sys.stderr, flush=True)
    started = time.monotonic()
    with tempfile.TemporaryFile(mode="w+") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT)
        interrupted = False
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            interrupted = True
            process.send_signal(signal.SIGINT)  # pytest stops and prints its summary of the tests it ran
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        output.seek(0)
        text = output.read()
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(text)
    result = {
        "command": "XLA_PYTHON_CLIENT_PREALLOCATE=false python " + " ".join(command[1:]),
        "returncode": process.returncode,
        "seconds": round(time.monotonic() - started, 1),
        **({"interrupted_at_s": timeout} if interrupted else {}),
    }
    return result | pytest_counts(text, f"no summary (timeout {timeout:.0f} s?)")


def pytest_counts(text: str, no_summary: str) -> dict:
    """passed/failed/skipped/errors from pytest's last summary line, and the ids of the FAILED/ERROR lines."""
    lines = text.strip().splitlines()
    failed = [line.split(" ", 1)[1].split(" - ")[0] for line in lines if line.startswith(("FAILED ", "ERROR "))]
    result = {"failed_ids": failed}
    summary = next((line for line in reversed(lines) if re.search(r"\d+ (passed|failed|skipped|error)", line)), "")
    for count, what in re.findall(r"(\d+) (passed|failed|skipped|errors?|xfailed|xpassed)", summary):
        result["errors" if what.startswith("error") else what] = int(count)
    return result if summary else result | {"tail": lines[-20:] or [no_summary]}


def tests_line(tests: dict) -> str:
    counts = ", ".join(f"{tests[k]} {k}" for k in ("passed", "failed", "errors", "skipped") if k in tests)
    seconds = f" in {tests['seconds']:.0f} s" if "seconds" in tests else ""
    seconds += f" (interrupted at {tests['interrupted_at_s']:.0f} s)" if "interrupted_at_s" in tests else ""
    return f"`{tests['command']}`: {counts or 'no summary'}{seconds}"


# --- tables: printed here, rendered as markdown by report.py ---------------------------------------------


def pair(a, b, digits: int = 3) -> str:
    return "–" if a is None or b is None else f"{a:,.{digits}f} / {b:,.{digits}f}"


def number(x, digits: int = 3) -> str:
    return "–" if x is None else f"{x:,.{digits}f}"


def find(rows, section: str, **keys) -> dict | None:
    """The ok row of ``section`` whose fields equal ``keys`` (``unroll`` matches the row's option)."""
    for row in rows:
        fields = {**row, **row.get("options", {})}
        if row["section"] == section and row["status"] == "ok" and all(fields.get(k) == v for k, v in keys.items()):
            return row
    return None


def groups(rows, section: str) -> list[tuple[str, str]]:
    return list(dict.fromkeys((r["config"], r["cell"]) for r in rows if r["section"] == section))


def timings(row: dict | None, digits: int = 3) -> str:
    if row is None:
        return "–"
    unroll = row.get("options", {}).get("unroll")
    note = f" (unroll {unroll})" if unroll else ""
    note += f" (default unroll {row['default_unroll']})" if row.get("default_unroll") else ""
    return pair(row["fwd"]["ms"], row["train"]["ms"], digits) + note


PEER_COLUMNS = ("torch", "rnnjax", "flax", "jax.experimental.rnn", "equinox")


def peers_table(rows) -> tuple[list[str], list[list[str]]]:
    header = ["config", "cell", *PEER_COLUMNS]
    body = [
        [config, cell.upper(), *(timings(find(rows, "peers", config=config, cell=cell, name=n)) for n in PEER_COLUMNS)]
        for config, cell in groups(rows, "peers")
    ]
    return header, body


def unroll_table(rows) -> tuple[list[str], list[list[str]]]:
    factors = sorted({r["options"]["unroll"] for r in rows if r["section"] == "unroll"})
    body = []
    for config, cell in groups(rows, "unroll"):
        found = (find(rows, "unroll", config=config, cell=cell, unroll=k) for k in factors)
        body.append([config, cell.upper(), *(pair(r["fwd"]["ms"], r["train"]["ms"]) if r else "–" for r in found)])
    return ["config", "cell", *(f"unroll {k}" for k in factors)], body


BF16_COLUMNS = {"rnnjax": "rnnjax (float32 params)", "rnnjax bf16 params": "rnnjax bf16 params", "torch": "torch"}


def bf16_table(rows) -> tuple[list[str], list[list[str]]]:
    body = [
        [config, cell.upper(), *(timings(find(rows, "bf16", config=config, cell=cell, name=n)) for n in BF16_COLUMNS)]
        for config, cell in groups(rows, "bf16")
    ]
    return ["config", "cell", *BF16_COLUMNS.values()], body


def parallel_scan_table(rows) -> tuple[list[str], list[list[str]]]:
    variants = list(dict.fromkeys(r["variant"] for r in rows if r["section"] == "parallel_scan"))
    lengths = list(dict.fromkeys(r["steps"] for r in rows if r["section"] == "parallel_scan"))
    body = []
    for steps in lengths:
        found = (find(rows, "parallel_scan", variant=v, steps=steps) for v in variants)
        body.append([f"{steps:,}", *(pair(r["fwd_ms"], r["grad_ms"], 2) if r else "–" for r in found)])
    return ["T", *variants], body


def decode_table(rows) -> tuple[list[str], list[list[str]]]:
    decoded = [r for r in rows if r["section"] == "decode" and r["status"] == "ok"]
    greedy = next((r["tokens_per_s"] for r in decoded if r["decoder"] == "greedy"), None)
    body = [
        [r["decoder"], number(r["tokens_per_s"], 0), number(greedy / r["tokens_per_s"], 1) if greedy else "–"]
        for r in decoded
    ]
    return ["decoder", "tokens/s", "time vs greedy"], body


def ratio_table(rows) -> tuple[list[str], list[list[str]]]:
    """Per (config, cell, mode): rnnjax's defaults against torch (TF32) and flax, and in bf16 against torch."""
    header = ["config", "cell", "mode", "rnnjax ms", "torch ms", "torch/rnnjax", "flax ms", "flax/rnnjax"]
    header += ["rnnjax bf16 ms", "torch bf16 ms", "torch/rnnjax bf16"]
    body = []
    for config, cell in groups(rows, "peers"):
        peer = {n: find(rows, "peers", config=config, cell=cell, name=n) for n in ("rnnjax", "torch", "flax")}
        bf16 = {n: find(rows, "bf16", config=config, cell=cell, name=n) for n in ("rnnjax", "torch")}
        for mode in ("fwd", "train"):
            ms = {n: r[mode]["ms"] if r else None for n, r in peer.items()}
            ms_bf16 = {n: r[mode]["ms"] if r else None for n, r in bf16.items()}
            body.append(
                [
                    config,
                    cell.upper(),
                    mode,
                    number(ms["rnnjax"]),
                    number(ms["torch"]),
                    ratio(ms["torch"], ms["rnnjax"]),
                    number(ms["flax"]),
                    ratio(ms["flax"], ms["rnnjax"]),
                    number(ms_bf16["rnnjax"]),
                    number(ms_bf16["torch"]),
                    ratio(ms_bf16["torch"], ms_bf16["rnnjax"]),
                ]
            )
    return header, body


def custom_vjp_table(rows) -> tuple[list[str], list[list[str]]]:
    found = [r for r in rows if r["section"] == "custom_vjp" and r["status"] == "ok"]
    names = list(dict.fromkeys(name for r in found for name in r["grad"]))
    body = [
        [
            r["config"],
            r.get("cell", "lstm"),
            *(number(r["grad"].get(n, {}).get("ms")) for n in names),
            number(r["grad"].get("rnnjax deferred", {}).get("x_baseline"), 2),
        ]
        for r in found
    ]
    return ["config", "cell", *(f"{n} ms" for n in names), "deferred / hoisted"], body


def fused_table(rows) -> tuple[list[str], list[list[str]]]:
    """The fused kernel against rnnjax's defaults (both in this section) and torch (peers section, if run)."""
    body = []
    for config, cell in groups(rows, "fused"):
        fused, default = (find(rows, "fused", config=config, cell=cell, name=n) for n in (FUSED, "rnnjax"))
        torch = find(rows, "peers", config=config, cell=cell, name="torch")
        if fused is None:
            continue
        ratios = [
            ratio(base[mode]["ms"], fused[mode]["ms"]) if base else "–"
            for base in (default, torch)
            for mode in ("fwd", "train")
        ]
        body.append([config, cell.upper(), timings(fused), timings(default), timings(torch), *ratios])
    header = ["config", "cell", "fused kernel", "rnnjax defaults", "torch"]
    return header + ["defaults/fused fwd", "defaults/fused train", "torch/fused fwd", "torch/fused train"], body


def ratio(a, b) -> str:
    return "–" if a is None or b is None else f"{a / b:.2f}"


TABLES = {  # section -> title, table
    "peers": ("Against peers (fwd / train ms)", peers_table),
    "unroll": ("rnnjax's scan unroll factor (fwd / train ms)", unroll_table),
    "bf16": ("bfloat16 (fwd / train ms)", bf16_table),
    "parallel_scan": ("Parallel scan of the min cells (fwd / grad ms)", parallel_scan_table),
    "decode": ("Decoding (tokens/s)", decode_table),
    "custom_vjp": ("Layer gradient: the recurrent weight's gradient after the loop vs in it (ms)", custom_vjp_table),
    "fused": ("The fused Pallas kernels (fwd / train ms)", fused_table),
}


def not_measured(rows) -> list[str]:
    """One line per (section, name, status, message) of the rows that are not ok, with where it happened."""
    where = {}
    for r in rows:
        if r["status"] != "ok":
            label = r.get("name") or r.get("variant") or r.get("decoder") or "rows"
            place = " ".join(str(r[k]) for k in ("config", "cell", "steps") if k in r)
            place += f" unroll {r['options']['unroll']}" if r["section"] == "unroll" else ""
            where.setdefault((r["section"], label, r["status"], r.get("error", "")), []).append(place)
    return [
        f"{section} {label} ({', '.join(p for p in places if p) or 'all'}): {status}: {error}"
        for (section, label, status, error), places in where.items()
    ]


def text_table(header: list[str], body: list[list[str]]) -> str:
    widths = [max(len(str(line[i])) for line in [header, *body]) for i in range(len(header))]
    return "\n".join("  ".join(str(c).rjust(w) for c, w in zip(line, widths, strict=True)) for line in [header, *body])


# --- main -------------------------------------------------------------------------------------------------


def git_commit() -> dict:
    def git(*args):
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else None

    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": git("rev-parse", "--short", "HEAD"), "dirty": bool(status) if status is not None else None}


def choose_device(args, env: dict) -> tuple[str, dict]:
    """--device, or gpu where jax has one, and jax's machine (asked in a worker: this process never imports jax)."""
    probe_env = {**env, "JAX_PLATFORMS": "cpu"} if args.device == "cpu" else env
    worker = Worker("jax", {"device": "any", "tiny": True, "repeats": 1, "jobs": []}, probe_env)
    try:
        tag, machine = worker.next(args.startup_timeout)
        backend = machine["backend"] if tag == "READY" else None
        why = worker.error() if tag == "exit" else "no answer"
    finally:
        worker.stop()
    if backend is None:
        raise SystemExit(f"jax does not start here: {why}")
    if args.device == "gpu" and backend != "gpu":
        raise SystemExit(
            f"--device gpu: jax finds no GPU here (its backend is {backend}); install jax with CUDA "
            '(pip install -U "jax[cuda13]") or pass --device cpu'
        )
    if args.device is None and backend != "gpu":
        print(f"jax finds no GPU here (backend {backend}): running on the CPU (--device cpu)", file=sys.stderr)
    return ("gpu" if backend == "gpu" else "cpu"), machine


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", choices=[*GPU_CONFIGS, "tiny"], help="default: S M L G (tiny: tiny)")
    parser.add_argument("--cells", nargs="+", default=list(CELLS), choices=CELLS)
    parser.add_argument("--device", choices=["gpu", "cpu"], help="default: gpu if jax has one, else cpu")
    parser.add_argument("--tiny", action="store_true", help="tiny sizes: a smoke run, on the CPU too")
    parser.add_argument("--quick", action="store_true", help="fewer repeats (3 instead of 10)")
    parser.add_argument("--repeats", type=int, help="timed calls per row (default 10; --quick 3)")
    parser.add_argument("--budget", type=float, default=345, help="seconds for the whole benchmark (default 345)")
    parser.add_argument("--row-timeout", type=float, default=60, help="seconds for one row (default 60)")
    parser.add_argument("--startup-timeout", type=float, default=120, help="seconds for a worker to start")
    parser.add_argument("--tests", action="store_true", help="run the test suite on the device first")
    parser.add_argument("--tests-only", action="store_true", help="run the test suite only")
    parser.add_argument("--tests-timeout", type=float, default=1200, help="seconds, then pytest is interrupted")
    parser.add_argument("--tests-log", type=Path, help="write pytest's whole output here")
    parser.add_argument(
        "--tests-paths", nargs="+", default=["tests/", "rnnjax/"], help="what pytest runs (default: tests/ rnnjax/)"
    )
    parser.add_argument(
        "--sections", nargs="+", choices=list(TABLES), help="run only these sections, in this order (default: all)"
    )
    parser.add_argument("--merge", nargs="+", type=Path, help="merge these results of one commit into --out, and stop")
    parser.add_argument("--out", type=Path, help="default results/gpu.json (results/gpu_smoke.json: --tiny or CPU)")
    parser.add_argument("--worker", choices=["jax", "torch"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker_main(args.worker)
    if args.merge:
        return write(
            merge([json.loads(path.read_text()) for path in args.merge]), args.out or HERE / "results" / "gpu.json"
        )

    started = time.monotonic()
    env = dict(os.environ)
    args.device, machine = choose_device(args, env)
    if args.device == "cpu":
        env["JAX_PLATFORMS"] = "cpu"
    args.repeats = args.repeats or (3 if args.quick else 10)
    args.configs = args.configs or (["tiny"] if args.tiny else list(GPU_CONFIGS))
    smoke = args.tiny or args.device == "cpu"
    args.out = args.out or HERE / "results" / ("gpu_smoke.json" if smoke else "gpu.json")
    report = {
        "benchmark": "gpu",
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "source": "python benchmarks/gpu.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "device": args.device,
        "tiny": args.tiny,
        "git": git_commit(),
        "machine": {"platform": platform.platform(), "python": platform.python_version(), "cpu_count": os.cpu_count()}
        | machine,
        "configs": {name: peers.CONFIGS[name] for name in args.configs},
        "settings": {k: getattr(args, k) for k in ("cells", "sections", "repeats", "budget", "row_timeout")},
        **{name: SIZES[name][args.tiny] for name in SIZES},
        "rows": [],
    }
    if args.tests or args.tests_only:
        report["tests"] = run_tests(env, args.tests_timeout, args.tests_log, args.tests_paths)
        print(tests_line(report["tests"]), file=sys.stderr, flush=True)
    if args.tests_only:
        return write(report, args.out, merge_tests=True)

    started = time.monotonic()  # the budget is the benchmark's, after the test suite
    runner = Runner(args, env, started)
    torch_jobs, jax_jobs, not_run = plan(args.configs, args.cells, args.device, args.tiny, args.sections)
    rows = runner.run("torch", torch_jobs)
    rows += runner.run("jax", jax_jobs)
    report["machine"].update(runner.machine)
    report["rows"] = rows + not_run
    report["elapsed_s"] = round(time.monotonic() - started, 1)

    for title, table in TABLES.values():
        print(f"\n{title}\n{text_table(*table(report['rows']))}")
    problems = not_measured(report["rows"])
    if problems:
        print("\nnot measured:\n" + "\n".join("  " + line for line in problems))
    if "tests" in report:
        print(f"\ntest suite: {tests_line(report['tests'])}")
    write(report, args.out)
    machine = report["machine"]
    print(
        f"\n{machine.get('device_kind')} ({args.device}), jax {machine.get('jax')}, torch {machine.get('torch')}, "
        f"cuDNN {machine.get('cudnn')}; {report['elapsed_s']:.0f} s. Ratios > 1: rnnjax faster."
    )
    print(text_table(*ratio_table(report["rows"])), flush=True)


ROW_KEYS = ("section", "name", "config", "cell", "options", "variant", "steps", "decoder")


def merge(reports: list[dict]) -> dict:
    """Runs of one commit on one machine as one report: the rows of all, in order. A row measured ("ok") in
    several runs keeps the first run's timings and lists the later ones under "repeats"; one measured in no
    run keeps its first status. The configs are the union; "tests" come from the first run that has them;
    "runs" records each run's source, date and seconds."""
    first = reports[0]
    for other in reports[1:]:
        for key in ("commit", "dirty"):
            if other["git"].get(key) != first["git"].get(key):
                raise SystemExit(f"--merge: runs of different commits ({first['git']} and {other['git']})")
        if other["machine"].get("device_kind") != first["machine"].get("device_kind"):
            raise SystemExit("--merge: runs on different devices")
    rows: dict[str, dict] = {}
    for report in reports:
        for row in report["rows"]:
            key = json.dumps([row.get(k) for k in ROW_KEYS])
            kept = rows.setdefault(key, row)
            if kept is row:
                continue
            if kept["status"] != "ok":
                rows[key] = row
            elif row["status"] == "ok":
                timings = {k: v for k, v in row.items() if k not in ROW_KEYS and k not in ("peer", "status")}
                kept.setdefault("repeats", []).append(timings)
    runs = [{k: r.get(k) for k in ("source", "date", "elapsed_s")} for r in reports]
    tests = next((r["tests"] for r in reports if "tests" in r), None)
    merged = {**first, "rows": list(rows.values()), "runs": runs}
    merged["configs"] = {name: c for r in reports for name, c in r["configs"].items()}
    merged["machine"] = {k: v for r in reports for k, v in r["machine"].items()}
    merged["source"] = "; ".join(f"`{r['source']}`" for r in reports)
    merged.pop("elapsed_s", None)
    return merged | ({"tests": tests} if tests else {})


def write(report: dict, out: Path, merge_tests: bool = False) -> None:
    """Write the JSON; a --tests-only run adds its "tests" to the same commit's earlier results."""
    if merge_tests and out.exists():
        earlier = json.loads(out.read_text())
        if earlier.get("git", {}).get("commit") == report["git"]["commit"]:
            report = {**earlier, "tests": report["tests"]}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    print(f"\nwrote {out}", flush=True)


if __name__ == "__main__":
    main()
