#!/usr/bin/env python3
"""Pictures of the benchmarks (matplotlib: Debian's python3-matplotlib).

Usage: plot.py [--sweep SWEEP.json] [--scale SCALE.csv] [--machine TEXT] [OUT_DIR]

--sweep: map_bench --sweep's JSON (bench/run_sweep.sh writes build-rel/bench/sweep.json).
  Draws ns/op against entries, log-log, 10^3 to 10^7, one panel per key/value shape:
  hash_lookup.png (bpfmap pointer, copy-out and multi; the kernel's bpf(2) and in-program
  lookups; boost::unordered_flat_map; the machine's random read as the floor of multi) and
  hash_update.png (the same paths that update).
--scale: scale_bench's --csv rows (bench/run_scale.sh --csv FILE). Draws aggregate Mops/s
  against processes, one file per map type (scale_<type>.png), one panel per (entries,
  update %), a line per path (bpfmap, kernel bpf(2), kernel in-program), and the perfect
  scaling of bpfmap's one-process row. A hollow marker is a row whose processes were on a
  CPU less than 90% of the time: other work disturbed it.
OUT_DIR defaults to bench/img/. The titles name the machine: the sweep JSON's context
(cpu_model, num_cpus, kernel), else this host's /proc/cpuinfo, or --machine.
"""
import argparse
import csv
import math
import os
import platform
import sys

try:
    import matplotlib
except ImportError:
    # Debian's python3-matplotlib is /usr/bin/python3's; another python3 may come first on PATH.
    if os.path.exists("/usr/bin/python3") and sys.executable != "/usr/bin/python3":
        os.execv("/usr/bin/python3", ["/usr/bin/python3"] + sys.argv)
    sys.exit("plot.py needs matplotlib (Debian: apt-get install python3-matplotlib)")

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FuncFormatter, NullFormatter  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ratios import READ_ROW, load  # noqa: E402

# path -> (label, colour, line style, marker); bpfmap solid, the kernel dashed, the peer dotted
SWEEP_PATHS = {
    "ptr": ("bpfmap pointer (program-side call)", "tab:blue", "-", "o"),
    "copy": ("bpfmap_bpf copy-out (bpf(2) convention)", "tab:green", "-", "s"),
    "multi": ("bpfmap lookup_multi, per key", "tab:cyan", "-", "^"),
    "kernel": ("kernel bpf(2) syscall", "tab:red", "--", "s"),
    "inprog": ("kernel in-program (BPF_PROG_TEST_RUN)", "tab:orange", "--", "o"),
    "boost": ("boost::unordered_flat_map (private table)", "tab:gray", ":", "d"),
}
SCALE_PATHS = {
    "bpfmap": ("bpfmap pointer calls", "tab:blue", "-", "o"),
    "kernel": ("kernel bpf(2)", "tab:red", "--", "s"),
    "inprog": ("kernel in-program", "tab:orange", "--", "^"),
}
DISTURBED_CPU_PCT = 90.0


def local_machine():
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return "%s, %d CPUs, kernel %s" % (model, os.cpu_count() or 0, platform.release())


def sweep_machine(context):
    model = context.get("cpu_model", "unknown CPU")
    text = "%s, %s CPUs" % (model, context.get("num_cpus", "?"))
    if "kernel" in context:
        text += ", kernel %s" % context["kernel"]
    return text


def sweep_note(context):
    """What a reader needs to weigh the numbers: when, and the load at the start."""
    load_avg = context.get("load_avg")
    parts = [context.get("date", "")[:16].replace("T", " ")]
    if load_avg:
        parts.append("load average at start %.2f" % load_avg[0])
    return "; ".join(p for p in parts if p)


def plain_number(v, _pos):
    return "%g" % v


def sparse_minor(v, _pos):
    """Minor log ticks labelled at 2 and 5 times a power of ten only."""
    if v <= 0:
        return ""
    mantissa = v / 10 ** math.floor(math.log10(v) + 1e-9)
    return "%g" % v if round(mantissa) in (2, 5) and abs(mantissa - round(mantissa)) < 1e-6 else ""


def log_axes(ax):
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(7e2, 1.4e7)
    ax.set_xticks([10**e for e in range(3, 8)])
    ax.set_xticklabels(["$10^%d$" % e for e in range(3, 8)])
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.yaxis.set_major_formatter(FuncFormatter(plain_number))
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.grid(True, which="major", alpha=0.4)
    ax.grid(True, which="minor", alpha=0.12)


def sweep_series(times, op):
    """{shape: {path: [(entries, ns)]}} for HASH rows of op (lookup or update)."""
    series = {}
    for name, ns in times.items():
        parts = name.split("/")
        if len(parts) != 5 or parts[0] != "HASH":
            continue
        _, entries, shape, row_op, path = parts
        if row_op == op + "_inprog" and path == "kernel":
            path = "inprog"
        elif row_op != op or path not in SWEEP_PATHS:
            continue
        series.setdefault(shape, {}).setdefault(path, []).append((int(entries), ns))
    return series


def shape_title(shape):  # "k16v64" -> "16-byte keys, 64-byte values"
    k, _, v = shape[1:].partition("v")
    return "%s-byte keys, %s-byte values" % (k, v)


def shape_rank(shape):
    k, _, v = shape[1:].partition("v")
    return (int(k), int(v)) if k.isdigit() and v.isdigit() else (0, 0)


def plot_sweep(path, out_dir, machine):
    context, times, errors = load(path)
    machine = machine or sweep_machine(context)
    written = []
    for op in ("lookup", "update"):
        series = sweep_series(times, op)
        if not series:
            continue
        shapes = sorted(series, key=shape_rank)
        fig, axes = plt.subplots(1, len(shapes), figsize=(6.4 * len(shapes), 5.2),
                                 sharey=True, squeeze=False)
        for ax, shape in zip(axes[0], shapes):
            for p, (label, colour, style, marker) in SWEEP_PATHS.items():
                pts = sorted(series[shape].get(p, []))
                if pts:
                    ax.plot([e for e, _ in pts], [ns for _, ns in pts], label=label,
                            color=colour, linestyle=style, marker=marker, markersize=5)
            if op == "lookup" and READ_ROW in times:
                ax.axhline(times[READ_ROW], color="black", linewidth=0.8, linestyle="-.",
                           label="random read of 1 GiB, per load (floor of multi)")
            log_axes(ax)
            ax.set_title(shape_title(shape))
            ax.set_xlabel("entries in the map (full)")
        axes[0][0].set_ylabel("ns per %s (log scale; lower is better)" % op)
        handles, labels = axes[0][0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=9, frameon=False)
        fig.suptitle("BPF_MAP_TYPE_HASH %s: ns/op against map size\n%s" % (op, machine),
                     fontsize=12)
        fig.text(0.99, 0.005, sweep_note(context), ha="right", va="bottom", fontsize=7,
                 color="dimgray")
        fig.tight_layout(rect=(0, 0.13, 1, 1))
        out = os.path.join(out_dir, "hash_%s.png" % op)
        fig.savefig(out, dpi=110)
        plt.close(fig)
        written.append(out)
    for name, why in sorted(errors.items()):
        print("plot.py: %s skipped in the run: %s" % (name, why), file=sys.stderr)
    return written


def read_scale(path):
    """{type: {(entries, upd): {path: [(procs, mops, cpu_pct)]}}}"""
    rows = {}
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            key = (int(r["entries"]), int(r["update_pct"]))
            pts = rows.setdefault(r["type"], {}).setdefault(key, {}).setdefault(r["path"], [])
            pts.append((int(r["procs"]), float(r["mops"]), float(r["cpu_pct"])))
    return rows


def plot_scale(path, out_dir, machine):
    machine = machine or local_machine()
    written = []
    for map_type, configs in read_scale(path).items():
        sizes = sorted({e for e, _ in configs})
        upds = sorted({u for _, u in configs})
        fig, axes = plt.subplots(len(sizes), len(upds),
                                 figsize=(3.6 * len(upds) + 0.6, 3.1 * len(sizes) + 1.3),
                                 squeeze=False)
        max_procs = 1
        for i, entries in enumerate(sizes):
            for j, upd in enumerate(upds):
                ax = axes[i][j]
                by_path = configs.get((entries, upd), {})
                for p, (label, colour, style, marker) in SCALE_PATHS.items():
                    pts = sorted(by_path.get(p, []))
                    if not pts:
                        continue
                    max_procs = max(max_procs, pts[-1][0])
                    xs = [n for n, _, _ in pts]
                    ax.plot(xs, [m for _, m, _ in pts], color=colour, linestyle=style,
                            marker=marker, markersize=6, label=label)
                    disturbed = [(n, m) for n, m, cpu in pts if cpu < DISTURBED_CPU_PCT]
                    if disturbed:
                        ax.plot([n for n, _ in disturbed], [m for _, m in disturbed],
                                linestyle="", marker=marker, markersize=6, color=colour,
                                markerfacecolor="white")
                    if p == "bpfmap" and pts[0][0] == 1:
                        ax.plot(xs, [pts[0][1] * n for n in xs], color=colour, alpha=0.5,
                                linewidth=1, linestyle=":",
                                label="bpfmap's 1 process times N (perfect scaling)")
                ax.set_yscale("log")
                ax.yaxis.set_major_formatter(FuncFormatter(plain_number))
                ax.yaxis.set_minor_formatter(FuncFormatter(sparse_minor))
                ax.tick_params(axis="y", which="minor", labelsize=7)
                ax.grid(True, which="both", alpha=0.3)
                ax.set_title("%s entries, %d%% updates" % (format(entries, ","), upd),
                             fontsize=10)
                if i == len(sizes) - 1:
                    ax.set_xlabel("processes sharing the map")
                if j == 0:
                    ax.set_ylabel("aggregate Mops/s (log)")
        for ax in axes.flat:
            ax.set_xticks(range(1, max_procs + 1))
            ax.set_xlim(0.8, max_procs + 0.2)
        handles, labels = [], []
        for ax in axes.flat:
            for h, l in zip(*ax.get_legend_handles_labels()):
                if l not in labels:
                    handles.append(h)
                    labels.append(l)
        height = fig.get_figheight()
        fig.legend(handles, labels, loc="lower center", bbox_to_anchor=(0.5, 0.2 / height),
                   ncol=2, fontsize=9, frameon=False)
        fig.suptitle("BPF_MAP_TYPE_%s shared by processes: aggregate throughput\n%s"
                     % (map_type, machine), fontsize=12)
        fig.text(0.5, 0.06 / height, "hollow marker: the processes were on a CPU less than "
                 "%d%% of the time (other work disturbed the row)" % DISTURBED_CPU_PCT,
                 ha="center", va="bottom", fontsize=8, color="dimgray")
        fig.tight_layout(rect=(0, 0.7 / height, 1, 1))
        out = os.path.join(out_dir, "scale_%s.png" % map_type.lower())
        fig.savefig(out, dpi=110)
        plt.close(fig)
        written.append(out)
    return written


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sweep", help="map_bench --sweep JSON")
    ap.add_argument("--scale", help="scale_bench --csv output")
    ap.add_argument("--machine", help="the machine, for the titles")
    ap.add_argument("out_dir", nargs="?", default=os.path.join(here, "img"))
    args = ap.parse_args()
    if not args.sweep and not args.scale:
        ap.error("nothing to draw: give --sweep and/or --scale")
    os.makedirs(args.out_dir, exist_ok=True)
    written = []
    machine = args.machine
    if args.sweep:
        written += plot_sweep(args.sweep, args.out_dir, machine)
        machine = machine or sweep_machine(load(args.sweep)[0])
    if args.scale:
        written += plot_scale(args.scale, args.out_dir, machine)
    for w in written:
        print(w)


if __name__ == "__main__":
    main()
