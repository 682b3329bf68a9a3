"""Side-by-side benchmarks of upmirror against peer tools (BENCHMARKS.md)."""
