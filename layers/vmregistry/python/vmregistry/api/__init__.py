"""The HTTP face of the domain layer, shared by every Lambda handler module."""

from __future__ import annotations

from vmregistry.api.endpoint import Endpoint, Request
from vmregistry.api.response import HttpResponse, Response, json_response

__all__ = ["Endpoint", "HttpResponse", "Request", "Response", "json_response"]
