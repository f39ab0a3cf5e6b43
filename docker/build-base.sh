#!/usr/bin/env bash
# Build the base image offline from registries: a minimal Debian bookworm root filesystem
# made by debootstrap (Debian's python3 is 3.11 there) with python3 and python3-pip, loaded
# into the engine with `docker import`. No registry is contacted; only a Debian mirror.
#
#   docker/build-base.sh                 # builds BASE_IMAGE unless the engine already has it
#   docker/build-base.sh --force         # rebuild even if it exists
#
# Environment: BASE_IMAGE (default applied-index-conformance/base:bookworm),
# DEBIAN_MIRROR (default http://deb.debian.org/debian), DEBIAN_SUITE (default bookworm).
# Needs root (debootstrap chroots), debootstrap (apt-get install debootstrap), docker.
# Idempotent: an existing image is kept; the temporary root filesystem is always removed.
set -euo pipefail

BASE_IMAGE="${BASE_IMAGE:-applied-index-conformance/base:bookworm}"
DEBIAN_MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
DEBIAN_SUITE="${DEBIAN_SUITE:-bookworm}"
PACKAGES="python3,python3-pip,ca-certificates"
force=0
[[ "${1:-}" == "--force" ]] && force=1

log() { printf 'build-base: %s\n' "$*" >&2; }

if [[ $force -eq 0 ]] && docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
    log "$BASE_IMAGE already present ($(docker image inspect -f '{{.Id}}' "$BASE_IMAGE" | cut -c1-19)); nothing to do"
    exit 0
fi
if [[ $(id -u) -ne 0 ]]; then
    log "debootstrap needs root (it chroots into the new root filesystem); run this as root"
    exit 1
fi
if ! command -v debootstrap >/dev/null 2>&1; then
    if command -v apt-get >/dev/null 2>&1; then
        log "debootstrap is missing: apt-get update && apt-get install -y debootstrap"
        t0=$(date +%s)
        apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive \
            apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
        log "installed debootstrap in $(( $(date +%s) - t0 ))s"
    else
        log "debootstrap is missing and there is no apt-get to install it with"
        exit 1
    fi
fi

start=$(date +%s)
workdir=$(mktemp -d "${TMPDIR:-/var/tmp}/conformance-rootfs.XXXXXX")
cleanup() {
    local rc=$?
    # debootstrap can leave /proc and /sys mounted in the chroot if it is interrupted
    for m in proc sys dev/pts dev; do
        mountpoint -q "$workdir/rootfs/$m" 2>/dev/null && umount -l "$workdir/rootfs/$m" || true
    done
    rm -rf --one-file-system "$workdir"
    if [[ $rc -eq 0 ]]; then
        log "built $BASE_IMAGE in $(( $(date +%s) - start ))s (temporary root filesystem removed)"
    else
        log "FAILED after $(( $(date +%s) - start ))s (temporary root filesystem removed)"
    fi
}
trap cleanup EXIT

rootfs="$workdir/rootfs"
log "debootstrap --variant=minbase --include=$PACKAGES $DEBIAN_SUITE $rootfs $DEBIAN_MIRROR"
debootstrap --variant=minbase --include="$PACKAGES" "$DEBIAN_SUITE" "$rootfs" "$DEBIAN_MIRROR" \
    >"$workdir/debootstrap.log" 2>&1 || {
    log "debootstrap failed; its log ends with:"
    tail -n 30 "$workdir/debootstrap.log" >&2
    exit 1
}
log "debootstrap done after $(( $(date +%s) - start ))s; trimming caches, docs and locales"
chroot "$rootfs" apt-get clean
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/log/*.log \
       "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* \
       "$rootfs"/usr/share/locale/* "$rootfs"/tmp/* "$rootfs"/var/tmp/*
# keep (and complete) the standard library's bytecode: containers run it from a read-only
# root filesystem, where Python could not cache it and would compile it at every start
chroot "$rootfs" python3 -m compileall -q -j0 /usr/lib/python3.11 /usr/lib/python3/dist-packages \
    >/dev/null 2>&1 || true
# docker import gives the image no config: set what a Python base needs
log "docker import -> $BASE_IMAGE ($(du -shx "$rootfs" | cut -f1) root filesystem)"
tar --numeric-owner --one-file-system -C "$rootfs" -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["/usr/bin/python3"]' \
    --message "debootstrap $DEBIAN_SUITE minbase + $PACKAGES (docker/build-base.sh)" \
    - "$BASE_IMAGE" >/dev/null
version=$(docker run --rm --network none "$BASE_IMAGE" python3 -c 'import sys; print(sys.version.split()[0])')
log "imported $BASE_IMAGE (python $version) after $(( $(date +%s) - start ))s"
