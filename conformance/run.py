"""Run the OCI conformance suite against registries and say whether they conform.

    python -m conformance [--server NAME ...] [--suite PATH] [--results DIR] [--filter TEST] [--no-clients]

For each ``--server`` (:data:`conformance.servers.SERVERS`; default
``distribution``) it starts the registry on a free loopback port, runs the
suite with every family of tests enabled (:data:`FAMILIES`), reads the results
and prints a summary; the exit status is 0 only if no test failed anywhere.
A registry may have a file of known failures (``known_failures/<server>.txt``,
``fnmatch`` patterns of test names with the reason for each): failures it
matches are reported but do not fail the run. Only ``distribution``, the
reference the harness is checked against, has one; ``vmregistry`` must have none.

The suite binary is looked for at ``--suite``, ``$OCI_CONFORMANCE``, then
``../shared/oci-conformance/oci-conformance`` and ``build/oci-conformance/oci-conformance``
(where the README's build instructions put it). Any ``OCI_*`` variable already
in the environment overrides the families chosen here (``OCI_API_MANIFESTS_TAG_PARAM=false``).

After the suite, a ``vmregistry-*`` server also meets real clients
(:mod:`conformance.clients`: skopeo, podman, a mirror through distribution);
any of their checks failing fails the run too.
"""

from __future__ import annotations

import argparse
import fnmatch
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from conformance.clients import run_clients
from conformance.results import Outcome, format_summary, read_api_table, read_junit
from conformance.servers import SERVERS, Registry, ServerError

__all__ = ["FAMILIES", "find_suite", "known_failures", "main", "run_suite"]

ROOT = Path(__file__).resolve().parent.parent
KNOWN_FAILURES = Path(__file__).resolve().parent / "known_failures"
SUITE_TIMEOUT = 1800.0
EXIT_FAILED, EXIT_SETUP = 1, 2

FAMILIES: dict[str, str] = {
    "OCI_VERSION": "1.1",
    # APIs: everything, including what 1.1 leaves off by default (upload cancel, the digest
    # header made mandatory on manifests, tags as parameters of a push by digest). Not the
    # digest header on blob GETs: a GET answers 307 to S3, and the suite checks the header on
    # the final answer, which S3 cannot give (it is still checked whenever it is present).
    "OCI_API_PING": "true",
    "OCI_API_PULL": "true",
    "OCI_API_PUSH": "true",
    "OCI_API_BLOBS_ATOMIC": "true",
    "OCI_API_BLOBS_DELETE": "true",
    "OCI_API_BLOBS_DIGEST_HEADER": "false",
    "OCI_API_BLOBS_MOUNT_ANONYMOUS": "true",
    "OCI_API_BLOBS_UPLOAD_CANCEL": "true",
    "OCI_API_MANIFESTS_ATOMIC": "true",
    "OCI_API_MANIFESTS_DELETE": "true",
    "OCI_API_MANIFESTS_DIGEST_HEADER": "true",
    "OCI_API_MANIFESTS_TAG_PARAM": "true",
    "OCI_API_TAGS_ATOMIC": "true",
    "OCI_API_TAGS_DELETE": "true",
    "OCI_API_TAGS_LIST": "true",
    "OCI_API_REFERRER": "true",
    # Data: every kind of content. Not "sparse" (manifests whose blobs were never pushed): the
    # registry verifies that a manifest's blobs are in the repository, as the spec allows
    # (MANIFEST_BLOB_UNKNOWN); non-distributable layers are still accepted unpushed.
    "OCI_DATA_IMAGE": "true",
    "OCI_DATA_INDEX": "true",
    "OCI_DATA_INDEX_LIST": "true",
    "OCI_DATA_SPARSE": "false",
    "OCI_DATA_ARTIFACT": "true",
    "OCI_DATA_SUBJECT": "true",
    "OCI_DATA_SUBJECT_MISSING": "true",
    "OCI_DATA_ARTIFACT_LIST": "true",
    "OCI_DATA_SUBJECT_LIST": "true",
    "OCI_DATA_DATA_FIELD": "true",
    "OCI_DATA_NONDISTRIBUTABLE": "true",
    "OCI_DATA_CUSTOM_FIELDS": "true",
    "OCI_DATA_NO_LAYERS": "true",
    "OCI_DATA_EMPTY_BLOB": "true",
    "OCI_DATA_SHA512": "true",
}


def find_suite(explicit: str | None) -> Path | None:
    candidates = [explicit, os.environ.get("OCI_CONFORMANCE")]
    candidates += [str(ROOT.parent / "shared/oci-conformance/oci-conformance")]
    candidates += [str(ROOT / "build/oci-conformance/oci-conformance")]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return Path(candidate)
    return None


def known_failures(server: str) -> list[str]:
    """The server's known-failure patterns: one per line, ``#`` starts a comment."""
    path = KNOWN_FAILURES / f"{server}.txt"
    if not path.exists():
        return []
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return [line for line in lines if line]


def suite_environment(registry: Registry, results: Path, test_filter: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OCI_")}
    env.update(FAMILIES)
    env.update({k: v for k, v in os.environ.items() if k.startswith("OCI_") and k != "OCI_CONFORMANCE"})
    env.update(
        {
            "OCI_REGISTRY": registry.address,
            "OCI_TLS": "disabled",
            "OCI_REPO1": "conformance/repo1",
            "OCI_REPO2": "conformance/repo2",
            "OCI_RESULTS_DIR": str(results),
            "OCI_LOG": env.get("OCI_LOG", "error"),
        }
    )
    if test_filter:
        env["OCI_FILTER_TEST"] = test_filter
    return env


def run_suite(suite: Path, registry: Registry, results: Path, test_filter: str | None) -> int:
    """Run the suite once; its own report goes to ``results/suite.out``; returns its exit status."""
    results.mkdir(parents=True, exist_ok=True)
    with open(results / "suite.out", "wb") as out:
        done = subprocess.run(
            [str(suite)],
            env=suite_environment(registry, results, test_filter),
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=results,  # where it looks for oci-conformance.yaml: none there
            timeout=SUITE_TIMEOUT,
            check=False,
        )
    return done.returncode


def _judge(outcome: Outcome, patterns: list[str]) -> tuple[bool, str]:
    failures = outcome.summary.failures
    expected = [case for case in failures if any(fnmatch.fnmatchcase(case.name, p) for p in patterns)]
    unexpected = [case for case in failures if case not in expected]
    lines = []
    if patterns:
        lines.append(f"  {len(expected)} failures are known for {outcome.server} (known_failures/{outcome.server}.txt)")
        unused = [p for p in patterns if not any(fnmatch.fnmatchcase(case.name, p) for case in failures)]
        if unused:
            lines.append("  known failures that did not fail this time: " + ", ".join(unused))
    if outcome.summary.counts["passed"] == 0:
        lines.append("  no test passed: the suite could not talk to the registry")
    passed = not unexpected and outcome.summary.counts["passed"] > 0
    verdict = "CONFORMS" if passed and not failures else "PASSED with known failures" if passed else "FAILED"
    if unexpected and patterns:
        lines.append("  unexpected failures: " + ", ".join(sorted({case.name for case in unexpected})))
    lines.append(f"  => {outcome.server}: {verdict}")
    return passed, "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m conformance", description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", action="append", choices=sorted(SERVERS), help="registry to test (repeatable)")
    parser.add_argument("--suite", help="path of the oci-conformance binary")
    parser.add_argument("--results", default=str(ROOT / "build/conformance"), help="results root (one dir per server)")
    parser.add_argument("--filter", help="run one branch of tests, e.g. 'OCI Conformance Test/sha256 blobs'")
    parser.add_argument("--debug", action="store_true", help="registry debug logs (distribution)")
    parser.add_argument("--details", type=int, default=3, help="error lines shown per failed test")
    parser.add_argument("--no-clients", action="store_true", help="skip the real clients' checks (skopeo, podman)")
    args = parser.parse_args(argv)

    suite = find_suite(args.suite)
    if suite is None:
        print(
            "oci-conformance not found: pass --suite, set OCI_CONFORMANCE, or build it (README: Conformance)",
            file=sys.stderr,
        )
        return EXIT_SETUP
    status = 0
    for name in args.server or ["distribution"]:
        results = Path(args.results) / name
        shutil.rmtree(results, ignore_errors=True)
        work = results / "server"
        work.mkdir(parents=True)
        started = time.monotonic()
        try:
            with SERVERS[name](work, debug=args.debug) as registry:
                print(f"-- {name} at {registry.url} (log {registry.log}); running {suite}", flush=True)
                code = run_suite(suite, registry, results, args.filter)
                clients = [] if args.no_clients or not name.startswith("vmregistry") else run_clients(registry, results)
        except (ServerError, subprocess.TimeoutExpired) as exc:
            print(f"== {name}: could not run: {exc}", file=sys.stderr)
            status = max(status, EXIT_SETUP)
            continue
        junit = results / "junit.xml"
        if not junit.exists():
            print(f"== {name}: the suite wrote no junit.xml (exit {code}); see {results / 'suite.out'}")
            status = max(status, EXIT_SETUP)
            continue
        outcome = Outcome(name, read_junit(junit), read_api_table(results / "results.yaml"), results, code)
        print(format_summary(outcome, detail_lines=args.details))
        passed, verdict = _judge(outcome, known_failures(name))
        print(verdict)
        for client in clients:
            print(f"  {'ok  ' if client.ok else 'FAIL'}  {client.name} ({client.seconds:.1f} s): {client.detail}")
        print(f"  ({time.monotonic() - started:.1f} s)", flush=True)
        if not passed or not all(client.ok for client in clients):
            status = max(status, EXIT_FAILED)
    return status
