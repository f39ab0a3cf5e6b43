"""Adapters: how the harness reaches a node under test (in process, local process, container)."""

from .base import Adapter, AdapterError, Hello, NodeDied, ProtocolViolation, RequestTimeout

__all__ = ["Adapter", "AdapterError", "Hello", "NodeDied", "ProtocolViolation", "RequestTimeout"]
