"""``make conformance``: the OCI distribution-spec conformance suite against a real registry.

:mod:`conformance.run` starts a registry on a free loopback port
(:mod:`conformance.servers`), runs the spec's own suite against it with every
family of tests enabled, and reads the suite's ``junit.xml`` and
``results.yaml`` (:mod:`conformance.results`) into a summary; it exits non-zero
on any failure. :mod:`conformance.proxy` is a logging reverse proxy for
watching what real clients (skopeo, podman, oras) send a registry.
"""
