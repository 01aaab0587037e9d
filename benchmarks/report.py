"""Write ``docs/performance.md`` and its figures from the JSON results in ``benchmarks/results/``.

``make bench`` runs the benchmarks and then this script, so the page always shows the numbers
of the last run (with the machine they ran on). A result file that is missing is reported as
missing on the page; nothing is made up.

    python benchmarks/report.py
    python benchmarks/report.py --results /tmp/results --docs /tmp/docs   # elsewhere (tests)
"""

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import gpu  # noqa: E402  (the GPU tables; imports neither jax nor torch)
import matplotlib.pyplot as plt  # noqa: E402

HERE = Path(__file__).parent
JAX_PEERS = ("flax", "flax_opt", "haiku", "equinox", "keras")
# GPU runs: results/gpu.json (what gpu.py writes) and earlier runs kept as results/gpu_<date>_<device>.json
# (gpu_2026-11-29_h200.json was measured by hand, before gpu.py existed)
GPU_ARCHIVE = "gpu_2*.json"


def gpu_runs(results: Path) -> list[dict]:
    """The GPU runs, newest first: gpu.json, then the archived ones by date."""
    archived = [json.loads(path.read_text()) for path in results.glob(GPU_ARCHIVE)]
    newest = load(results, "gpu")
    return ([newest] if newest else []) + sorted(archived, key=lambda run: run["date"], reverse=True)


def load(results: Path, name: str) -> dict | None:
    path = results / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def fmt(x, digits=1) -> str:
    return "–" if x is None else f"{x:,.{digits}f}"


def with_gemm_percent(report: dict) -> dict:
    """Every row's % of the GEMM limit against the limit its table shows (rows may come from several runs)."""
    gemms = [r for r in report["rows"] if r["peer"] == "gemm" and r["status"] == "ok"]
    limits = {(r["config"], r["cell"]): r["gemm_gflops"] for r in gemms}
    for row in report["rows"]:
        limit = limits.get((row["config"], row["cell"]))
        if row["peer"] != "gemm" and row["status"] == "ok" and limit:
            for mode in ("fwd", "train"):
                row[mode]["gemm_percent"] = 100 * row[mode]["gflops"] / limit
    return report


def peers_section(report: dict, figures: Path) -> list[str]:
    rows = report["rows"]
    machine = report["machine"]
    lines = [
        f"Measured with `python benchmarks/peers.py` (median of {report['repeats']} calls after warm-up, each row in "
        f"its own process; {machine['cpu_count']} CPU cores, jax {machine['jax']}, {machine['platform']}). "
        "Throughput in thousands of sequence-steps per second (batch × T / time); *rnnjax/peer* > 1 means rnnjax "
        "is faster. *% GEMM* is the achieved matmul GFLOP/s as a share of one GEMM with the same FLOPs "
        "on the same machine (the practical limit).",
        "",
    ]
    groups = list(dict.fromkeys((r["config"], r["cell"]) for r in rows))
    for config_name, cell in groups:
        group = [r for r in rows if r["config"] == config_name and r["cell"] == cell]
        ours = next((r for r in group if r["peer"] == "rnnjax" and r["status"] == "ok"), None)
        gemm = next((r for r in group if r["peer"] == "gemm" and r["status"] == "ok"), None)
        config = report["configs"][config_name]
        title = (
            f"### {cell.upper()} {config_name}: batch {config['batch']}, T {config['steps']}, "
            f"input {config['input']}, hidden {config['hidden']}"
        )
        lines += [title, ""]
        if gemm:
            lines += [f"GEMM limit: {gemm['gemm_gflops']:.0f} GFLOP/s.", ""]
        lines += [
            "| peer | fwd ms | train ms | fwd k steps/s | train k steps/s | fwd % GEMM | train % GEMM "
            "| rnnjax/peer fwd | rnnjax/peer train | compile s | XLA temp MiB (train) | peak RSS growth MiB |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in group:
            if r["peer"] == "gemm":
                continue
            if r["status"] != "ok":
                lines.append(f"| {r['peer']} | {r['status']}: {r.get('error', '')} |" + " |" * 10)
                continue
            fwd, train = r["fwd"], r["train"]
            ratio_fwd = ours["fwd"]["ksteps_per_s"] / fwd["ksteps_per_s"] if ours else None
            ratio_train = ours["train"]["ksteps_per_s"] / train["ksteps_per_s"] if ours else None
            lines.append(
                f"| {r['peer']} | {fmt(fwd['ms'], 2)} | {fmt(train['ms'], 2)} | {fmt(fwd['ksteps_per_s'], 0)} "
                f"| {fmt(train['ksteps_per_s'], 0)} | {fmt(fwd.get('gemm_percent'), 0)} "
                f"| {fmt(train.get('gemm_percent'), 0)} | {fmt(ratio_fwd, 2)} | {fmt(ratio_train, 2)} "
                f"| {fmt(fwd['compile_s'] + train['compile_s'], 1)} | {fmt(train.get('xla_temp_mib'), 1)} "
                f"| {fmt(r['peak_rss_growth_mib'], 0)} |"
            )
        lines.append("")

    figure = figures / "perf_peers.png"
    fig, axes = plt.subplots(len(groups), 2, figsize=(10, 2.6 * len(groups)), squeeze=False)
    for row_axes, (config_name, cell) in zip(axes, groups, strict=True):
        group = [r for r in rows if r["config"] == config_name and r["cell"] == cell and r["peer"] != "gemm"]
        ok = [r for r in group if r["status"] == "ok"]
        for ax, mode in zip(row_axes, ("fwd", "train"), strict=True):
            names = [r["peer"] for r in ok]
            values = [r[mode]["ksteps_per_s"] for r in ok]
            colors = ["tab:red" if n == "rnnjax" else "tab:gray" for n in names]
            ax.barh(names, values, color=colors)
            ax.set_title(f"{cell.upper()} {config_name} {mode}", fontsize=9)
            ax.set_xlabel("k sequence-steps / s")
            ax.invert_yaxis()
    fig.tight_layout()
    fig.savefig(figure, dpi=90)
    plt.close(fig)
    lines += [f"![throughput per peer](figures/{figure.name})", ""]
    return lines


def targets_section(report: dict) -> list[str]:
    """Issue 6's targets against what was measured."""
    rows = {(r["config"], r["cell"], r["peer"]): r for r in report["rows"] if r["status"] == "ok"}
    lines = ["| target | measured | met |", "|---|---|---|"]

    def speed(config, cell, peer, mode):
        row = rows.get((config, cell, peer))
        return row[mode]["ksteps_per_s"] if row else None

    for config in ("S", "M"):
        for mode in ("fwd", "train"):
            ours, torch = speed(config, "lstm", "rnnjax", mode), speed(config, "lstm", "torch", mode)
            if ours and torch:
                ratio = ours / torch
                lines.append(
                    f"| LSTM {config} {mode}: rnnjax at least on par with torch | "
                    f"rnnjax/torch = {ratio:.2f} | {'yes' if ratio >= 0.95 else 'no'} |"
                )
    ours = speed("S", "lstm", "rnnjax", "train")
    peers = {p: speed("S", "lstm", p, "train") for p in JAX_PEERS}
    peers = {p: v for p, v in peers.items() if v}
    if ours and peers:
        fastest = max(peers, key=peers.get)
        ratio = ours / peers[fastest]
        lines.append(
            f"| LSTM S train: at least 1.5x the fastest JAX peer | rnnjax/{fastest} = {ratio:.2f} "
            f"| {'yes' if ratio >= 1.5 else 'no'} |"
        )
    for cell in ("lstm", "gru"):
        row = rows.get(("M", cell, "rnnjax"))
        if row and "gemm_percent" in row["train"]:
            fwd_pct, train_pct = row["fwd"]["gemm_percent"], row["train"]["gemm_percent"]
            lines.append(
                f"| {cell.upper()} M: at least 80% of the GEMM limit | fwd {fwd_pct:.0f}%, train {train_pct:.0f}% "
                f"| {'yes' if min(fwd_pct, train_pct) >= 80 else 'no'} |"
            )
    for config in ("S", "M", "L"):
        for cell in ("lstm", "gru"):
            for mode in ("fwd", "train"):
                ours = speed(config, cell, "rnnjax", mode)
                peers = {p: speed(config, cell, p, mode) for p in JAX_PEERS}
                peers = {p: v for p, v in peers.items() if v}
                if ours and peers:
                    fastest = max(peers, key=peers.get)
                    ratio = ours / peers[fastest]
                    lines.append(
                        f"| {cell.upper()} {config} {mode}: fastest of the JAX libraries | rnnjax/{fastest} = "
                        f"{ratio:.2f} | {'yes' if ratio >= 1.0 else 'no'} |"
                    )
    return lines + [""]


def remat_section(report: dict) -> list[str]:
    config = report["config"]
    lines = [
        f"`python benchmarks/remat_memory.py`: LSTM, batch {config['batch']}, input {config['input_size']}, "
        f"hidden {config['hidden_size']}; XLA's temporary buffers of the compiled gradient.",
        "",
        "| T | loss on | plain MiB | remat MiB | remat / plain | plain s | remat s |",
        "|---|---|---|---|---|---|---|",
    ]
    by_key = {(r["steps"], r["loss_on"], r["remat"]): r for r in report["rows"]}
    for steps, loss_on in dict.fromkeys((r["steps"], r["loss_on"]) for r in report["rows"]):
        plain, remat = by_key.get((steps, loss_on, False)), by_key.get((steps, loss_on, True))
        if plain and remat:
            share = 100 * remat["temp_mib"] / plain["temp_mib"]
            lines.append(
                f"| {steps:,} | {loss_on} | {plain['temp_mib']:.1f} | {remat['temp_mib']:.1f} "
                f"| {share:.0f}% | {plain['grad_s']:.2f} | {remat['grad_s']:.2f} |"
            )
    return lines + [""]


def parallel_scan_section(report: dict, figures: Path) -> list[str]:
    lines = [
        f"`python benchmarks/parallel_scan.py`: batch {report['batch']}, input {report['input_size']}, "
        f"hidden {report['hidden_size']}, {report['backend']} (median of {report['repeats']}).",
        "",
        "| T | variant | fwd ms | grad ms |",
        "|---|---|---|---|",
    ]
    for r in report["rows"]:
        lines.append(f"| {r['steps']:,} | {r['variant']} | {r['fwd_ms']:.2f} | {r['grad_ms']:.2f} |")
    lines += ["", "Crossover (the shortest T from which the parallel path is faster at every longer T measured):", ""]
    for name, steps in report["crossover"].items():
        lines.append(f"- {name}: " + (f"T = {steps:,}" if steps else "not within the lengths measured"))
    figure = figures / "perf_parallel_scan.png"
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    for ax, mode in zip(axes, ("fwd_ms", "grad_ms"), strict=True):
        for variant in dict.fromkeys(r["variant"] for r in report["rows"]):
            points = [(r["steps"], r[mode]) for r in report["rows"] if r["variant"] == variant]
            ax.plot(*zip(*points, strict=True), marker="o", label=variant)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("T")
        ax.set_ylabel("ms")
        ax.set_title("forward" if mode == "fwd_ms" else "gradient")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(figure, dpi=90)
    plt.close(fig)
    return lines + ["", f"![parallel vs sequential](figures/{figure.name})", ""]


def scaling_section(report: dict) -> list[str]:
    lines = [f"`python benchmarks/parallel_scaling.py`: {report['meta'].get('note', '')}.", ""]
    lines += ["| step | devices | steps/s | vs fewest devices |", "|---|---|---|---|"]
    for r in report["rows"]:
        lines.append(f"| {r['step']} | {r['devices']} | {r['steps_per_s']:.1f} | {r['ratio_to_fewest_devices']:.2f} |")
    return lines + [""]


def features_section(report: dict) -> list[str]:
    columns = list(dict.fromkeys((r["config"], r["cell"]) for r in report["rows"]))
    by_key = {(r["config"], r["cell"], r["name"]): r for r in report["rows"]}
    lines = [
        f"`python benchmarks/features_cost.py` ({report.get('date', 'undated')}): one training step (forward, BPTT, "
        f"Adam) at the S and M sizes above, {report['machine']['backend']} ({report['machine']['platform']}), jax "
        f"{report['jax']}; ms per step (the ratio to the plain cell), the fastest of {report['repeats']} interleaved "
        "repeats. On the CPU unroll runs its in-loop path; the GPU's hoisted path is not measured here yet.",
        "",
    ]
    body = []
    for name in dict.fromkeys(r["name"] for r in report["rows"]):
        cells = [by_key.get((config, cell, name)) for config, cell in columns]
        body.append([name, *("–" if r is None else f"{r['ms']:.2f} ({r['ratio']:.2f})" for r in cells)])
    header = ["row", *(f"{config} {cell.upper()}" for config, cell in columns)]
    return lines + markdown_table(header, body) + [""]


def markdown_table(header: list[str], body: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header), *("| " + " | ".join(r) + " |" for r in body)]


def repeat_spread(rows: list[dict]) -> str:
    """How far the rows measured in two runs (gpu.py --merge keeps the others under "repeats") differ."""
    spreads = sorted(
        abs(again[mode]["ms"] / row[mode]["ms"] - 1)
        for row in rows
        for again in row.get("repeats", [])
        for mode in ("fwd", "train")
        if mode in row and mode in again
    )
    if not spreads:
        return (
            "Between two runs of the same row the times differed by about 5% (H200, 2026-11-29): read smaller "
            "gaps as ties."
        )
    median = spreads[len(spreads) // 2]
    return (
        f"{len(spreads)} timings were measured in two runs: they differed by {median:.0%} (median) and at most "
        f"{spreads[-1]:.0%}; read smaller gaps as ties (the first run's timings are shown)."
    )


def measured(report: dict, section: str) -> bool:
    return any(row["section"] == section and row["status"] == "ok" for row in report["rows"])


def gpu_section(report: dict, earlier: list[dict] = ()) -> list[str]:
    """The GPU run; a section it did not reach is shown from the newest of the ``earlier`` runs that measured
    it, said so with that run's date."""
    machine, commit = report["machine"], report["git"]["commit"]
    source = report["source"]
    software = [f"jax {machine['jax']}" + (f" (jaxlib {machine['jaxlib']})" if "jaxlib" in machine else "")]
    software += [f"CUDA {machine['cuda']}"] if "cuda" in machine else []
    software += [f"flax {machine['flax']}"] if "flax" in machine else []
    if machine.get("torch"):
        cuda = f" (CUDA {machine['torch_cuda']})" if machine.get("torch_cuda") else ""
        cudnn = f" with cuDNN {machine['cudnn']}" if machine.get("cudnn") else ""
        software.append(f"torch {machine['torch']}{cuda}{cudnn}")
    count = machine.get("device_count", 1)
    device = ("one" if count == 1 else f"{count} ×") + f" {machine['device_kind']}"
    device += f" ({machine['memory']})" if "memory" in machine else ""
    configs = "; ".join(
        f"{name} = batch {c['batch']}, T {c['steps']:,}, input {c['input']}, hidden {c['hidden']}"
        for name, c in report["configs"].items()
    )
    dirty = " (with uncommitted changes)" if report["git"].get("dirty") else ""
    lines = [
        f"**Run:** {report['date']}, commit `{commit}`{dirty}, {device}; {', '.join(software)}.",
        "",
        "**Source:** " + (f"`{source}`." if source.startswith("python ") else source),
        "",
        "ms per call, median after warm-up (`block_until_ready`, `torch.cuda.synchronize`); *fwd* is the jitted "
        "forward pass over the batch returning every output, *train* one training step (forward, BPTT, Adam) on a "
        f"mean squared error. {configs}. JAX's default float32 matmul on the H200 is TF32 (a plain float32 GEMM ran "
        "at four times the GPU's FP32 rate), as on any NVIDIA GPU with TF32 (Ampere and newer), so torch with TF32 "
        "allowed (`torch.backends.cuda.matmul.allow_tf32`, `torch.backends.cudnn.allow_tf32`) is the like-for-like "
        f"row. {repeat_spread(report['rows'])}",
        "",
        "Columns: *torch* is nn.LSTM / nn.GRU on CUDA (cuDNN); *rnnjax* is "
        "`jax.vmap(lambda x: rj.unroll(cell, params, x)[1])` with the library's defaults; *flax* is linen's "
        "`nn.RNN` over its LSTM / GRU cell; *equinox* runs its cells under `lax.scan`, vmapped; "
        "*jax.experimental.rnn* is cuDNN's LSTM called from JAX. `python benchmarks/gpu.py` (`make bench-gpu`) "
        "measures all of this on one GPU in about 6 minutes and writes `benchmarks/results/gpu.json`, which this "
        "section then shows; earlier runs are kept as `benchmarks/results/gpu_<date>_<device>.json`, and a "
        "section the newest run did not reach is shown from the newest earlier run that measured it.",
        "",
    ]
    notes = report.get("notes", {})
    for section, (title, table) in gpu.TABLES.items():
        shown, note = report, notes.get(section)
        older = next((run for run in earlier if measured(run, section)), None)
        if older is not None and not measured(report, section):
            shown, note = older, older.get("notes", {}).get(section)
            when = f"{older['date'][:10]}, commit `{older['git']['commit']}`"
            lines += [f"### {title}", "", f"Not reached by the run above; from the earlier run ({when}):", ""]
        else:
            lines += [f"### {title}", ""]
        if measured(shown, section):
            lines += [*markdown_table(*table(shown["rows"])), ""]
        elif any(row["section"] == section for row in shown["rows"]):
            lines += ["Not measured yet (below: why).", ""]
        else:
            lines += [
                f"Not measured yet: no GPU run has had this section (`python benchmarks/gpu.py --sections {section}`).",
                "",
            ]
        lines += [note, ""] if note else []
        if section == "peers":
            lines += ["Ratios (> 1: rnnjax faster):", "", *markdown_table(*gpu.ratio_table(shown["rows"])), ""]
    problems = gpu.not_measured(report["rows"])
    if problems:
        lines += ["Not measured:", "", *(f"- {line}" for line in problems), ""]
    lines += ["### The test suite on the GPU", ""]
    tests = report.get("tests")
    if tests is None:
        lines += ["Not run with these results (`python benchmarks/gpu.py --tests`).", ""]
        return lines
    lines += [gpu.tests_line(tests) + "." + (f" {tests['note']}" if "note" in tests else ""), ""]
    if tests.get("failed_ids"):
        shown = tests["failed_ids"][:60]
        lines += ["Failing:", "", *(f"- `{test}`" for test in shown)]
        lines += [f"- and {len(tests['failed_ids']) - len(shown)} more"] if len(tests["failed_ids"]) > 60 else []
        lines.append("")
    if "failed_summary" in tests:
        lines += [f"Failing: {tests['failed_summary']}", ""]
    return lines + ([tests["explained"], ""] if "explained" in tests else [])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=Path, default=HERE / "results")
    parser.add_argument("--docs", type=Path, default=HERE.parent / "docs")
    args = parser.parse_args(argv)
    figures = args.docs / "figures"
    figures.mkdir(parents=True, exist_ok=True)

    intro = (HERE / "performance_intro.md").read_text()
    lines = [
        "<!-- generated by benchmarks/report.py from benchmarks/results/*.json: edit the script or "
        "benchmarks/performance_intro.md, not this file -->",
        "",
        intro.rstrip(),
        "",
    ]
    sections = [
        ("Speed against peer libraries", "peers", lambda r: peers_section(r, figures)),
        ("Targets", "peers", targets_section),
        ("Long sequences: BPTT memory with remat", "remat_memory", remat_section),
        ("Long sequences: parallel scan of min cells", "parallel_scan", lambda r: parallel_scan_section(r, figures)),
        ("Many devices: data-parallel overhead", "parallel_scaling", scaling_section),
        ("What masks, dropout and layer norm cost a training step", "features_cost", features_section),
    ]
    for title, name, render in sections:
        lines += [f"## {title}", ""]
        report = load(args.results, name)
        if name == "peers" and report is not None:
            report = with_gemm_percent(report)
        if report is None:
            lines += [f"No results yet: `benchmarks/results/{name}.json` is missing (run `make bench`).", ""]
        else:
            lines += render(report)
    lines += ["## On one GPU", ""]
    runs = gpu_runs(args.results)
    if not runs:
        lines += ["No GPU results yet: run `python benchmarks/gpu.py --tests` on a GPU (`make bench-gpu`).", ""]
    else:
        lines += gpu_section(runs[0], runs[1:])
    lines += [
        "## Decoding",
        "",
        "Greedy and beam-search tokens/s and the beam-width trade-off: see the "
        "[decoding guide](guide/decoding.md) (`python benchmarks/decode.py`).",
        "",
    ]
    out = args.docs / "performance.md"
    out.write_text("\n".join(lines))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
