"""Runs a Python script whose time.perf_counter() reports CPU time instead of wall time:
time.process_time(), user + system seconds of every thread of the process. On a machine shared
with other work, CPU time is what the load disturbs least. bench/side_by_side.sh runs OpenCLIP's
bench_loop.py through it with METRIC=cpu, to compare with bench_step's "cpu" figure.

Usage: python3 bench/cpu_clock.py SCRIPT [ARGS...]"""
import os
import runpy
import sys
import time

time.perf_counter = time.process_time
sys.argv = sys.argv[1:]
sys.path[0] = os.path.dirname(os.path.abspath(sys.argv[0]))  # as when the script runs itself
runpy.run_path(sys.argv[0], run_name="__main__")
