"""Real processes on loopback: what the tests, the benchmarks, the conformance run and the emulator share.

Each of them starts servers as child processes on free loopback ports and must
stop them without hanging on one that ignores SIGTERM:

* :mod:`loopback.processes`: a free port, and a stop that escalates to SIGKILL;
* :mod:`loopback.distribution`: the configuration CNCF distribution (the
  reference registry the benchmarks and the conformance run compare with)
  is started with.

The registry itself (``layers/``, ``functions/``) never imports this package.
"""
