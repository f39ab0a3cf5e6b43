#!/bin/sh
# The reference node's entrypoint in its image: serve the wire protocol over TCP on
# $CONFORMANCE_PORT (7070) with its data on the /data volume. Arguments are passed on to
# the server: the capability switches (--no-reader, --no-writer, --no-header-applier,
# --pin-after-restore, --unsynced). $REFERENCE_MUTANT (the image's MUTANT build argument)
# selects a deliberately broken variant (reference_impl/mutants.py).
set -eu
if [ -n "${REFERENCE_MUTANT:-}" ]; then
    set -- --mutant "$REFERENCE_MUTANT" "$@"
fi
exec python3 -m reference_impl.server --listen "0.0.0.0:${CONFORMANCE_PORT:-7070}" --data-dir /data "$@"
