#!/usr/bin/env bash
# Build the reference node's image and mutant images from docker/Dockerfile.
#
#   docker/build-images.sh                   # base (if absent) + reference + the default mutants
#   docker/build-images.sh --if-engine       # the same, but exit 0 with a notice when no Docker
#                                            # engine is reachable (never under CI=true)
#   MUTANTS="a b" docker/build-images.sh     # other mutants (names from reference_impl/mutants.py)
#   BASE_IMAGE=python:3.11-slim docker/build-images.sh   # with a registry: a public base
#
# Environment: BASE_IMAGE (default applied-index-conformance/base:bookworm, built offline by
# docker/build-base.sh when absent), IMAGE_PREFIX (default applied-index-conformance), TAG
# (default latest), MUTANTS. Images: $IMAGE_PREFIX/reference:$TAG and
# $IMAGE_PREFIX/mutant-<name>:$TAG. Rebuilds are cheap: the engine caches the layers.
set -euo pipefail
cd "$(dirname "$0")/.."

BASE_IMAGE="${BASE_IMAGE:-applied-index-conformance/base:bookworm}"
IMAGE_PREFIX="${IMAGE_PREFIX:-applied-index-conformance}"
TAG="${TAG:-latest}"
# four mutants the container path must reject (none needs a power loss): a persist-order bug
# seen through a crash failpoint, a store bug, a cold-start bug, a verification bug
MUTANTS="${MUTANTS:-pin-after-pointer-save delete-prefix-not-bundling-meta effective-snap-on-skip skip-without-crc-verification}"

log() { printf 'build-images: %s\n' "$*" >&2; }

if [[ "${1:-}" == "--if-engine" ]] && ! docker info >/dev/null 2>&1; then
    if [[ "${CI:-}" == "true" ]]; then
        log "FAIL: no Docker engine is reachable (docker info failed) and CI=true"
        exit 1
    fi
    log "SKIP: no Docker engine is reachable (docker info failed); container images not built"
    exit 0
fi

total_start=$(date +%s)
if [[ "$BASE_IMAGE" == applied-index-conformance/base:* ]]; then
    BASE_IMAGE="$BASE_IMAGE" docker/build-base.sh
fi

# The one runtime dependency of reference_impl, as a wheel for the image's Python (3.11) and
# architecture, fetched on the host so that the build itself needs no network. 2.7.1 is the
# newest crc32c whose import does not load importlib.metadata and argparse (2.8+), which
# would add ~150 ms to every start of the node, i.e. to every restart of a case.
CRC32C_VERSION="${CRC32C_VERSION:-2.7.1}"
if ! ls docker/wheels/crc32c-"$CRC32C_VERSION"-*.whl >/dev/null 2>&1; then
    arch=$(uname -m)
    rm -f docker/wheels/crc32c-*.whl
    log "pip download crc32c==$CRC32C_VERSION (cp311, manylinux2014_$arch) -> docker/wheels/"
    python3 -m pip download --quiet --disable-pip-version-check --no-deps --dest docker/wheels \
        --only-binary=:all: --python-version 3.11 --implementation cp --abi cp311 \
        --platform "manylinux2014_$arch" "crc32c==$CRC32C_VERSION"
fi

buildlog=$(mktemp)
trap 'rm -f "$buildlog"' EXIT
build() {  # tag, then extra docker build arguments
    local tag=$1 t0
    shift
    t0=$(date +%s)
    # the classic builder: no buildx plugin is needed, and it never contacts a registry for a
    # base image the engine already has
    # (no --label: the classic builder turns it into one more committed layer; its output,
    # deprecation notice included, is shown only when the build fails)
    if ! DOCKER_BUILDKIT=0 docker build -f docker/Dockerfile --build-arg "BASE_IMAGE=$BASE_IMAGE" \
            -t "$tag" "$@" . >"$buildlog" 2>&1; then
        tail -n 40 "$buildlog" >&2
        log "FAILED to build $tag"
        exit 1
    fi
    log "built $tag in $(( $(date +%s) - t0 ))s"
}

build "$IMAGE_PREFIX/reference:$TAG"
for m in $MUTANTS; do
    build "$IMAGE_PREFIX/mutant-$m:$TAG" --build-arg "MUTANT=$m"
done
log "done in $(( $(date +%s) - total_start ))s (base $BASE_IMAGE)"
