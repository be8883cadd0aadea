"""Lesson 5's benchmark: all-MiniLM-L6-v2 in FP32, BF16 and five int8 variants on this CPU.

Every variant embeds the course's sentence set (Lesson 3's search task: corpus and queries);
forwards at batch 1 and batch 32 are timed interleaved in one run, so each ratio to FP32 comes
from the same minutes on the same machine. The run happens twice, in two fresh processes: one
with the default allocator, one that first applies the allocator setting of
`tutorlib.allocator.keep_freed_memory` (a process-wide setting that cannot be undone, hence a
process of its own). Prints the machine, its matmul peaks, each run's table, the two settings
side by side, the ceiling that the rest of the forward sets (FP32 timed without its linear
layers' work, `tutorlib.profiling.linear_free_cap`) and the targets of benchmarks/README.md;
writes JSON and a bar chart (PNG).

    python benchmarks/int8_inference.py                 # or: make bench
    python benchmarks/int8_inference.py --repeats 5 --out /some/where/results.json
    python benchmarks/int8_inference.py --allocator keep   # one run, in this process only
"""

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

from tutorlib.layers.int8_kernel import select_int8_kernel, survey_isas
from tutorlib.models.minilm import load_minilm
from tutorlib.models.search_task import load_search_task, search_sentences
from tutorlib.perf.allocator import keep_freed_memory
from tutorlib.perf.amdahl import linear_free_cap
from tutorlib.perf.benchmark import (
    compare_settings,
    format_table,
    read_rows,
    run_benchmark,
    write_json,
)
from tutorlib.perf.machine import cpu_info
from tutorlib.perf.targets import check_targets
from tutorlib.perf.timing import measure_matmul_peaks
from tutorlib.perf.variants import build_variants, drop_unused_pooler, use_inplace_gelu
from tutorlib.plotting import plot_int8_speedups

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "int8_inference.json"
SETTINGS = ("default", "keep")  # glibc's defaults; keep_freed_memory() applied first
ISA_CAPS = ("AVX512_CORE_VNNI", "AVX2")  # other CPUs, emulated by capping oneDNN's ISA


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15, help="timed rounds (default 15)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls first (default 2)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 32], help="default: 1 32")
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help=f"JSON (default {DEFAULT_OUT})"
    )
    parser.add_argument("--peak-size", type=int, default=2048, help="matmul size for the peaks")
    parser.add_argument(
        "--allocator",
        choices=SETTINGS,
        default=None,
        help="run once, in this process, with this allocator setting (default: run both, each "
        "in a fresh subprocess, and compare)",
    )
    return parser.parse_args(argv)


def run_one(args: argparse.Namespace) -> int:
    """One benchmark run in this process, with args.allocator applied first."""
    kept = keep_freed_memory() if args.allocator == "keep" else False
    machine = cpu_info()
    print(f"[{args.allocator}] torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"malloc keeps freed memory: {kept}")  # fmt: skip
    isa = os.environ.get("ONEDNN_MAX_CPU_ISA") or "the machine's own"
    print(f"[{args.allocator}] ONEDNN_MAX_CPU_ISA: {isa}; W8A8: {select_int8_kernel().describe()}")
    model, tokenizer = load_minilm()
    drop_unused_pooler(model)  # mean-pooled embeddings never read it: every variant skips it
    use_inplace_gelu(model)  # the same numbers, one tensor less per block, for every variant
    sentences = search_sentences(load_search_task())
    variants = build_variants(model, tokenizer, sentences)
    peaks = measure_matmul_peaks(args.peak_size)
    rows = run_benchmark(
        variants,
        tokenizer,
        sentences,
        peaks.int8_ops_per_s,
        batch_sizes=args.batch_sizes,
        repeats=args.repeats,
        warmup=args.warmup,
    )
    print(format_table(rows))
    # The ceiling of any faster linear layers: FP32 at the largest batch without their work.
    batch = tokenizer(sentences[: max(args.batch_sizes)], padding=True, return_tensors="pt")
    cap = linear_free_cap(variants["FP32"], lambda m: m(**batch), repeats=args.repeats)
    print(f"FP32 at batch {max(args.batch_sizes)}: {cap.full_ms:.1f} ms, {cap.rest_ms:.1f} ms of "
          f"it outside the linear layers' work: no linear kernel can give more than "
          f"{cap.cap:.2f}x")  # fmt: skip
    settings = {
        "repeats": args.repeats,
        "warmup": args.warmup,
        "batch_sizes": args.batch_sizes,
        "allocator": args.allocator,
        "malloc_keeps_freed_memory": kept,
        "linear_free": {
            "batch_size": max(args.batch_sizes),
            "full_ms": cap.full_ms,
            "rest_ms": cap.rest_ms,
            "cap": cap.cap,
        },  # fmt: skip
    }
    write_json(args.out, rows, machine, peaks, settings)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.allocator is not None:
        return run_one(args)
    started = time.perf_counter()
    machine = cpu_info()
    print(f"machine: {machine.describe()}")
    peaks = measure_matmul_peaks(args.peak_size)
    print(
        f"matmul peaks ({args.peak_size}^3): int8 {peaks.int8_ops_per_s / 1e9:.0f} Gop/s, "
        f"fp32 {peaks.fp32_ops_per_s / 1e9:.0f} Gop/s, bf16 {peaks.bf16_ops_per_s / 1e9:.0f} Gop/s "
        f"(int8 / fp32 = {peaks.int8_ops_per_s / peaks.fp32_ops_per_s:.2f})"
    )
    paths = {}
    for setting in SETTINGS:  # one fresh process each: the setting cannot be undone
        paths[setting] = args.out.with_name(f"{args.out.stem}_{setting}.json")
        command = [sys.executable, __file__, "--allocator", setting, "--out", str(paths[setting])]
        command += ["--repeats", str(args.repeats), "--warmup", str(args.warmup)]
        command += ["--peak-size", str(args.peak_size), "--batch-sizes"]
        command += [str(b) for b in args.batch_sizes]
        print(f"\n--- run with allocator setting {setting!r} (a subprocess) ---", flush=True)
        subprocess.run(command, check=True)
    # The same run with oneDNN capped at other instruction sets: AVX-512 VNNI without BF16 or
    # AMX, and AVX2 (no VNNI: 7-bit activations). A cap above this CPU changes nothing, so a cap
    # whose oneDNN ISA equals the default run's is reported and not run again.
    default_isa, *capped = survey_isas(("",) + ISA_CAPS)
    print(f"\noneDNN runs at {default_isa.onednn_isa} without a cap")
    isa_paths = {}
    for report in capped:
        if report.onednn_isa == default_isa.onednn_isa:
            same = f"oneDNN runs at {report.onednn_isa} as without a cap (not below this CPU)"
            print(f"ONEDNN_MAX_CPU_ISA={report.requested}: {same}; the default run stands for it")
            continue
        isa_paths[report.requested] = args.out.with_name(
            f"{args.out.stem}_{report.requested.lower()}.json"
        )
        command = [sys.executable, __file__, "--allocator", "default"]
        command += ["--out", str(isa_paths[report.requested])]
        command += ["--repeats", str(args.repeats), "--warmup", str(args.warmup)]
        command += ["--peak-size", str(args.peak_size), "--batch-sizes"]
        command += [str(b) for b in args.batch_sizes]
        print(
            f"\n--- run with ONEDNN_MAX_CPU_ISA={report.requested} (a subprocess) ---", flush=True
        )
        env = {**os.environ, "ONEDNN_MAX_CPU_ISA": report.requested}
        subprocess.run(command, check=True, env=env)
    rows = {setting: read_rows(path) for setting, path in paths.items()}
    print(f"\nlatency = median of {args.repeats} interleaved forwards; ratios within each run")
    print(compare_settings(rows["default"], rows["keep"]).round(2).to_string(index=False))
    if {1, 32} <= set(args.batch_sizes):
        print("\ntargets for tutorlib W8A8 (benchmarks/README.md):")
        for key, target in check_targets(rows["default"], rows["keep"]).items():
            spec = target.spec
            relation = ">" if spec.strict else ">="
            verdict = "met" if target.met else ("stretch, not met" if spec.stretch else "NOT met")
            print(f"  {key:18s} {spec.goal}: {target.measured:.3f} "
                  f"(need {relation} {spec.required}) {verdict}")  # fmt: skip
    for isa, isa_path in isa_paths.items():
        print(f"\nONEDNN_MAX_CPU_ISA={isa}, default allocator (ratios within that run):")
        isa_rows = read_rows(isa_path)
        print(format_table(isa_rows))
        if {1, 32} <= set(args.batch_sizes):
            for key, target in check_targets(isa_rows).items():
                print(f"  {key:18s} {target.measured:.3f} (need >= {target.spec.required}) "
                      f"{'met' if target.met else 'not met'}")  # fmt: skip
    settings = {"repeats": args.repeats, "runs": {s: str(p) for s, p in paths.items()}}
    path = write_json(args.out, rows["default"], machine, peaks, settings)
    figure = plot_int8_speedups(rows["default"], machine.model_name)
    figure.savefig(path.with_suffix(".png"), dpi=100, bbox_inches="tight")
    print(f"\nwrote {path} and {path.with_suffix('.png')} in {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
