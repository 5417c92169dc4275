"""The benchmarks: one module per hot loop or pipeline, run from the repository root as
``python -m bench.<name> [--json] ...``; bench/common.py is their harness (argument parsing,
warm-up and median timing, the machine's description, the JSON report) and their shared
setup. Figures go to bench/RESULTS.md with the machine and the command."""
