"""Tools that measure the lab: the benchmark (python -m lab.tools.bench) and the demo load test (lab.tools.loadtest)."""
