"""A Lambda function's init without the cyclic garbage collector walking it.

Importing a handler creates ~15,000 objects that live as long as the process
(modules, classes, functions, the route table). While they load, allocation
counts keep triggering the collector, and its full passes walk everything
loaded so far to find almost nothing: measured here, ~20 % of a handler's cold
import (``python -m bench.lambda_costs``). So, inside Lambda, the functions
package pauses the collector before anything else loads (:func:`pause`), and
each entry point ends the init once its module has loaded (:func:`resume`):
:func:`gc.freeze` moves everything allocated so far to the permanent
generation, so the collections that run during invocations do not walk it
either, and the collector runs as usual from then on. Nothing is deferred to
the first invocation: the passes that were skipped are not owed later. The
price is the little garbage the imports leave (~160 objects here), kept for
the life of the process: collecting it first would cost one full pass,
10-25 ms.

Outside Lambda (local server, tests, the CLI) neither does anything.
"""

from __future__ import annotations

import gc
import os

__all__ = ["pause", "resume"]

_paused = False


def pause() -> None:
    """Stop the collector for the rest of a Lambda init (only if it runs, only in Lambda)."""
    global _paused
    if os.environ.get("AWS_LAMBDA_FUNCTION_NAME") and gc.isenabled():
        gc.disable()
        _paused = True


def resume() -> None:
    """End the init :func:`pause` began: freeze what it loaded, then collect as usual."""
    global _paused
    if _paused:
        _paused = False
        gc.freeze()
        gc.enable()
