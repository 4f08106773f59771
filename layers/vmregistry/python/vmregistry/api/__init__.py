"""The HTTP face of the domain layer, shared by every Lambda handler module."""

from __future__ import annotations

from vmregistry.api.endpoint import Endpoint, Request, Response, json_response

__all__ = ["Endpoint", "Request", "Response", "json_response"]
