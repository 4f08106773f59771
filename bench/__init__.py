"""Benchmarks: vm-registry against CNCF distribution, same run, same machine, same client.

``make bench`` (``python -m bench``) starts both registries on loopback with
throwaway roots and measures blob throughput (curl), the control plane (wrk),
the Lambda cost figures, the local server's peak memory, when LocalStack
is available the S3 mode, catalog and tags pages with the same data in both
registries, and manifest PUTs by layer count. Results land in ``bench/results/`` and
``docs/bench.md``. Nothing here is part of ``make test`` except a smoke run
of the harness with tiny sizes (``tests/test_bench_smoke.py``).
"""
