"""The realistic catalog generator used by the demo, tests and benchmarks: a root server shaped like Microsoft
Update (``tree``), and its updates and files (``generate``)."""
