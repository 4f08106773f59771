"""vmregistry: a serverless registry for virtual-machine images.

The package is the domain layer every Lambda function gets as a layer, the
local server, and the reference client.
"""

from __future__ import annotations

__version__ = "0.1.0"
