"""``python -m conformance``: see :mod:`conformance.run`."""

from __future__ import annotations

from conformance.run import main

raise SystemExit(main())
