"""Fault layers the harness puts *under* a node, so faults need no cooperation from it.

`crashfs/` is a crash-simulating filesystem (FUSE, in the spirit of LazyFS): a passthrough
to a backing directory that remembers everything not yet durable, drops it on command
(power loss), counts the node's syncs, and can stop the node at its k-th write, fsync,
rename or directory fsync (the ALICE / CrashMonkey idea). The adapters mount it over the
node's data directory (`conformance/adapters/process.py`, the container adapter).
"""
