"""``python -m benches [--quick] [WORKLOAD...]``: runs the side-by-side benchmarks of BENCHMARKS.md and prints
their Markdown tables; results go to ``benches/results/<workload>.json``."""

from __future__ import annotations

import argparse
import importlib

# Workload id -> module under benches/. Each module has `run(quick: bool) -> Report`.
WORKLOADS = {
    "W1": "benches.w1_hash",
    "W2a": "benches.w2_download",
    "W2b": "benches.w2b_download_wan",
    "W3": "benches.w3_small_files",
    "W4": "benches.w4_first_sync",
    "W4m": "benches.w4_catalog_scale",
    "W5": "benches.w5_next_sync",
    "W6": "benches.w6_copy",
    "W7": "benches.w7_dedup",
    "W8": "benches.w8_serve",
    "W9a": "benches.w9_decode",
    "W9b": "benches.w9_wsus_sync",
    "W10": "benches.w10_wsus_serve",
    "W12": "benches.w12_startup",
    "P1": "benches.protocol",
}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benches", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, fewer runs: a few minutes in all")
    parser.add_argument("workloads", nargs="*", metavar="WORKLOAD", help=f"any of {', '.join(WORKLOADS)}")
    args = parser.parse_args()
    chosen = args.workloads or list(WORKLOADS)
    unknown = [w for w in chosen if w not in WORKLOADS]
    if unknown:
        parser.error(f"unknown workload(s) {', '.join(unknown)}; choose from {', '.join(WORKLOADS)}")
    for workload in chosen:
        module = importlib.import_module(WORKLOADS[workload])
        report = module.run(args.quick)
        path = report.write()
        print(report.markdown())
        print(f"\n(results in {path})\n", flush=True)


if __name__ == "__main__":
    main()
