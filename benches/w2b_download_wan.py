"""W2b of BENCHMARKS.md (defined in ``benches/w2_download.py`` beside W2a, which shares its contenders)."""

from __future__ import annotations

from benches.harness import Report
from benches.w2_download import run_wan


def run(quick: bool) -> Report:
    return run_wan(quick)
