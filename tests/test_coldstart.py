"""A function's init runs without the cyclic garbage collector, and hands it back when done.

Each case starts a fresh interpreter, as a Lambda cold start does, and imports
one function module the way Lambda's runtime does (by its handler string).
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from vmregistry.routes import FUNCTIONS

MODULES = [spec.module for spec in FUNCTIONS]
PROBE = (
    "import gc, importlib, sys\n"
    "importlib.import_module(sys.argv[1])\n"
    "print(gc.isenabled(), gc.get_freeze_count() > 0)\n"
)


def imported(module: str, **environment: str) -> list[str]:
    base = {k: v for k, v in os.environ.items() if k != "AWS_LAMBDA_FUNCTION_NAME"}
    done = subprocess.run(
        [sys.executable, "-c", PROBE, module],
        env=base | {"POWERTOOLS_TRACE_DISABLED": "true"} | environment,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.split()


@pytest.mark.parametrize("module", MODULES)
def test_every_function_ends_its_init_with_the_collector_running(module: str) -> None:
    # GIVEN Lambda's environment WHEN a function module has been imported
    collector = imported(module, AWS_LAMBDA_FUNCTION_NAME="vmregistry-test")
    # THEN the collector runs again, and what the import loaded is frozen out of its passes
    assert collector == ["True", "True"]


def test_outside_lambda_the_collector_is_left_alone() -> None:
    # GIVEN no Lambda environment (the local server, tests, the CLI) WHEN a handler is imported
    collector = imported("vmregistry_functions.blob_head")
    # THEN the collector was never paused, and nothing was frozen
    assert collector == ["True", "False"]
