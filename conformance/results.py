"""Reading the suite's results: ``junit.xml`` for the tests, ``results.yaml`` for the API table.

The suite writes one ``<testcase>`` per leaf test, named by its path in the
test tree (``OCI Conformance Test/sha256 blobs/chunked multi/blob-patch-chunked``),
with a ``status`` attribute (``passed``, ``skipped``, ``failure``, ``error``)
and, for a failed test, its errors in ``<system-out>`` and the HTTP exchanges in
``<system-err>``. The second component of the name is the family (a data set
such as ``image`` or ``sha512``, or a group such as ``sha256 blobs``), which is
what the summary groups by. ``results.yaml`` adds the suite's verdict per API
(``Blob chunked: Pass``); it is read with a two-level parser of its own, as
the file is flat and PyYAML is not a dependency.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Outcome", "Summary", "TestCase", "format_summary", "read_api_table", "read_junit"]

ROOT_NAME = "OCI Conformance Test"
FAILED = frozenset({"failure", "error"})


@dataclass(frozen=True)
class TestCase:
    name: str
    """The path below the root, e.g. ``sha256 blobs/chunked multi/blob-patch-chunked``."""
    status: str
    errors: str
    exchanges: str

    @property
    def family(self) -> str:
        return self.name.split("/", 1)[0]

    @property
    def failed(self) -> bool:
        return self.status in FAILED


@dataclass
class Summary:
    cases: list[TestCase]
    counts: Counter[str] = field(default_factory=Counter)

    @property
    def failures(self) -> list[TestCase]:
        return [case for case in self.cases if case.failed]

    @property
    def ok(self) -> bool:
        # A run that tested nothing proves nothing.
        return not self.failures and self.counts["passed"] > 0


@dataclass(frozen=True)
class Outcome:
    """One registry's run: the summary and the suite's API table."""

    server: str
    summary: Summary
    apis: dict[str, str]
    results_dir: Path
    exit_code: int


def read_junit(path: Path) -> Summary:
    root = ET.parse(path).getroot()
    cases = []
    for element in root.iter("testcase"):
        name = element.get("name", "")
        prefix = ROOT_NAME + "/"
        cases.append(
            TestCase(
                name=name[len(prefix) :] if name.startswith(prefix) else name,
                status=element.get("status", "error"),
                errors=(element.findtext("system-out") or "").strip(),
                exchanges=element.findtext("system-err") or "",
            )
        )
    return Summary(cases, Counter(case.status for case in cases))


def read_api_table(path: Path) -> dict[str, str]:
    """The ``apis:`` mapping of ``results.yaml`` (API name to Pass/FAIL/Skip/Disabled)."""
    table: dict[str, str] = {}
    if not path.exists():
        return table
    inside = False
    for line in path.read_text().splitlines():
        if not line.startswith(" "):
            inside = line.rstrip() == "apis:"
            continue
        if inside and ":" in line:
            key, _, value = line.strip().rpartition(":")
            table[key.strip()] = value.strip()
    return table


def _first_lines(text: str, lines: int) -> str:
    kept = [line for line in text.splitlines() if line.strip()][:lines]
    return "\n".join(kept)


def format_summary(outcome: Outcome, *, detail_lines: int = 3) -> str:
    """A readable report: counts per family, the API table's misses, each failure's first errors."""
    summary = outcome.summary
    out = [f"== {outcome.server}: {summary.counts['passed']} passed, {len(summary.failures)} failed, "]
    out[0] += f"{summary.counts['skipped']} skipped (results in {outcome.results_dir})"
    families: dict[str, Counter[str]] = {}
    for case in summary.cases:
        families.setdefault(case.family, Counter())[case.status] += 1
    width = max((len(name) for name in families), default=10)
    for name, counts in families.items():
        mark = "FAIL" if any(counts[s] for s in FAILED) else "ok"
        out.append(
            f"  {name:<{width}}  {mark:<4}  passed {counts['passed']:>3}  failed"
            f" {counts['failure'] + counts['error']:>3}  skipped {counts['skipped']:>3}"
        )
    misses = {api: verdict for api, verdict in outcome.apis.items() if verdict not in ("Pass", "Disabled")}
    if misses:
        out.append("  APIs not passing: " + ", ".join(f"{api} ({verdict})" for api, verdict in sorted(misses.items())))
    # One entry per test name: data sets repeat a test for every blob and manifest they hold.
    by_name: dict[str, list[TestCase]] = {}
    for case in summary.failures:
        by_name.setdefault(case.name, []).append(case)
    for name, cases in by_name.items():
        out.append(f"  FAILED {name}" + (f" (x{len(cases)})" if len(cases) > 1 else ""))
        out.extend("      " + line for line in _first_lines(cases[0].errors, detail_lines).splitlines())
    if not summary.cases:
        out.append("  the suite reported no test at all")
    return "\n".join(out)
