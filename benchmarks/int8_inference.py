"""Lesson 5's benchmark: all-MiniLM-L6-v2 in FP32, BF16 and five int8 variants on this CPU.

Every variant embeds the course's sentence set (Lesson 3's search task: corpus and queries);
forwards at batch 1 and batch 32 are timed interleaved in one run, so each ratio to FP32 comes
from the same minutes on the same machine. Prints the machine, its matmul peaks, a table
(median latency, ratio to FP32, size, min cosine to FP32, linear-layer time and throughput as a
fraction of the int8 peak) and the lesson's targets; writes JSON and a bar chart (PNG).

    python benchmarks/int8_inference.py                 # or: make bench
    python benchmarks/int8_inference.py --repeats 5 --out /some/where/results.json
"""

import argparse
import sys
import time
from pathlib import Path

import torch

from tutorlib.allocator import keep_freed_memory
from tutorlib.benchmark import (
    build_variants,
    check_targets,
    format_table,
    run_benchmark,
    write_json,
)
from tutorlib.machine import cpu_info
from tutorlib.plotting import plot_int8_speedups
from tutorlib.search import load_minilm, load_search_task, search_sentences
from tutorlib.timing import measure_matmul_peaks

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "int8_inference.json"


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
        "--default-malloc",
        action="store_true",
        help="keep glibc's default thresholds (freed blocks go back to the OS; big temporaries "
        "then page-fault at every call)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    kept = False if args.default_malloc else keep_freed_memory()
    machine = cpu_info()
    print(f"machine: {machine.describe()}")
    threads = torch.get_num_threads()
    print(f"torch {torch.__version__}, {threads} threads; malloc keeps freed memory: {kept}")
    model, tokenizer = load_minilm()
    task = load_search_task()
    sentences = search_sentences(task)
    variants = build_variants(model, tokenizer, sentences)
    peaks = measure_matmul_peaks(args.peak_size)
    print(
        f"matmul peaks ({args.peak_size}^3): int8 {peaks.int8_ops_per_s / 1e9:.0f} Gop/s, "
        f"fp32 {peaks.fp32_ops_per_s / 1e9:.0f} Gop/s, bf16 {peaks.bf16_ops_per_s / 1e9:.0f} Gop/s "
        f"(int8 / fp32 = {peaks.int8_ops_per_s / peaks.fp32_ops_per_s:.2f})"
    )
    rows = run_benchmark(
        variants,
        tokenizer,
        sentences,
        peaks.int8_ops_per_s,
        batch_sizes=args.batch_sizes,
        repeats=args.repeats,
        warmup=args.warmup,
    )
    print(f"\n{len(sentences)} sentences; latency = median of {args.repeats} interleaved forwards")
    print(format_table(rows))
    if {1, 32} <= set(args.batch_sizes):
        print("\ntargets for tutorlib W8A8:")
        for target in check_targets(rows):
            verdict = "met" if target.met else "NOT met"
            print(f"  {target.goal}: {target.measured:.4f} (need {target.required}) {verdict}")
    settings = {
        "repeats": args.repeats,
        "warmup": args.warmup,
        "batch_sizes": args.batch_sizes,
        "malloc_keeps_freed_memory": kept,
    }
    path = write_json(args.out, rows, machine, peaks, settings)
    figure = plot_int8_speedups(rows, machine.model_name)
    figure.savefig(path.with_suffix(".png"), dpi=100, bbox_inches="tight")
    print(f"\nwrote {path} and {path.with_suffix('.png')} in {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
