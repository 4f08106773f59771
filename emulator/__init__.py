"""The stack, deployed into an AWS emulator on this machine: MiniStack, started, bridged, deployed.

``make emulator-up`` / ``make emulator-down`` (:mod:`emulator.__main__`) and the
deployed-stack tests (``tests/deployed_stack/``) use the same pieces:

* :mod:`emulator.process`: MiniStack in its own venv (``.ministack-venv``),
  on a loopback port, over TLS (:mod:`emulator.tls`), with IAM enforced;
* :mod:`emulator.ministack_main`: MiniStack's entry point with the gaps
  between it and AWS bridged, each one documented there and in docs/deploy.md;
* :mod:`emulator.lambda_launcher`: how each function starts (layers at
  ``/opt``, no site-packages), as on Lambda;
* :mod:`emulator.deploy`: the real CDK app, synthesized once and deployed with
  the pinned CDK CLI (``cdklocal``);
* :mod:`emulator.fetch`: one HTTPS request to it, as tests and the bench send them.

What is deployed is the stack AWS gets; only the harness adapts to the
emulator. The last two modules above run in MiniStack's interpreter and use
only the standard library and MiniStack.
"""

from __future__ import annotations

__all__: list[str] = []
