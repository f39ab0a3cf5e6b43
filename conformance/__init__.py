"""The conformance harness for durable applied-index and snapshot-persist protocols."""

__version__ = "0.1.0"
