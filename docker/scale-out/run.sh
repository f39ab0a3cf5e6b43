#!/usr/bin/env bash
# One exploration campaign over several workers on this machine's Docker engine, with the
# shared Redis example database and the findings collected into one place (docs/scale-out.md):
#
#   docker/scale-out/run.sh                   # 3 workers x 30 s on the default mutant
#   TIME=10 docker/scale-out/run.sh           # 10 s per worker
#   IMPL=reference TIME=120 OUT=/tmp/so docker/scale-out/run.sh
#
# It builds the two images (a Redis server from Debian's redis-server package and a worker
# with the `conformance` command, both FROM the project's base image, docker/build-base.sh),
# then, as one compose project (docker-compose.yml):
#
#   1. starts Redis and counts its keys (none);
#   2. runs the workers (worker-K: `conformance explore --impl IMPL --time TIME --seed 100K
#      --database redis://redis:6379/0 --out /found/worker-K`) and waits for them;
#   3. counts the keys again: the examples the workers saved in the shared database;
#   4. starts one more worker with an example budget of ONE generated sequence, with the
#      shared database and without it (the control): what it finds with it, it replayed
#      from what the others saved;
#   5. collects the workers' fixtures into /found/merged (`conformance collect`);
#   6. copies /found out to OUT (default reports/scale-out/) and replays every merged
#      fixture: red on IMPL, green on the reference;
#   7. writes OUT/summary.json with the figures, and prints them.
#
# Containers, network and volume are removed on any exit (the images are kept: the next
# run reuses them). Exit status: 0 when every step held, 1 otherwise (the step is named).
#
# Environment: IMPL (default mutant:delete-prefix-not-bundling-meta), TIME (seconds per
# worker, default 30), OUT, REV (whose package the workers run: default `worktree`, the
# working tree as it is, its tracked and untracked files that git does not ignore; or a git
# revision, e.g. HEAD), BASE_IMAGE, IMAGE_PREFIX, TAG, PYTHON (the host's python3 with pip,
# for the project's wheel), RUN_TIMEOUT (seconds for the workers, default 3 x TIME + 120),
# PROJECT (the compose project's name, default conformance-scaleout-<pid>), FORCE_BUILD=1
# (rebuild both images).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
HERE="$ROOT/docker/scale-out"

IMPL="${IMPL:-mutant:delete-prefix-not-bundling-meta}"
TIME="${TIME:-30}"
REV="${REV:-worktree}"
BASE_IMAGE="${BASE_IMAGE:-applied-index-conformance/base:bookworm}"
IMAGE_PREFIX="${IMAGE_PREFIX:-applied-index-conformance}"
TAG="${TAG:-latest}"
PYTHON="${PYTHON:-python3}"
RUN_TIMEOUT="${RUN_TIMEOUT:-$(( ${TIME%.*} * 3 + 120 ))}"
DEFAULT_OUT="$ROOT/reports/scale-out"
OUT="${OUT:-$DEFAULT_OUT}"
REDIS_IMAGE="$IMAGE_PREFIX/scale-out-redis:$TAG"
WORKER_IMAGE="$IMAGE_PREFIX/scale-out-worker:$TAG"
PROJECT="${PROJECT:-conformance-scaleout-$$}"
DB="redis://redis:6379/0"
export IMPL TIME IMAGE_PREFIX TAG

log() { printf 'scale-out: %s\n' "$*" >&2; }
fail() { log "FAIL: $*"; exit 1; }
started=$(date +%s)

docker info >/dev/null 2>&1 || fail "no Docker engine answers (docker info)"
if command -v docker-compose >/dev/null 2>&1; then
    COMPOSE=(docker-compose)
elif docker compose version >/dev/null 2>&1; then
    COMPOSE=(docker compose)
else
    fail "neither docker-compose nor the docker compose plugin is installed"
fi
compose() { "${COMPOSE[@]}" -p "$PROJECT" -f "$HERE/docker-compose.yml" "$@"; }

if [[ "$OUT" == "$DEFAULT_OUT" ]]; then
    rm -rf "$OUT"
elif [[ -e "$OUT" && -n "$(ls -A "$OUT" 2>/dev/null)" ]]; then
    fail "OUT=$OUT is not empty"
fi
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

workdir=$(mktemp -d "${TMPDIR:-/tmp}/conformance-scaleout.XXXXXX")
cleanup() {
    local rc=$?
    trap - EXIT INT TERM HUP
    if [[ -n "${compose_up:-}" ]]; then
        log "tearing down $PROJECT (containers, network, volume)"
        compose down -v --remove-orphans --timeout 5 >/dev/null 2>&1 || true
        # one-off containers of `compose run` that an interrupt left behind
        ids=$(docker ps -aq --filter "label=com.docker.compose.project=$PROJECT")
        [[ -n "$ids" ]] && docker rm -f $ids >/dev/null 2>&1 || true
        docker volume rm -f "${PROJECT}_found" >/dev/null 2>&1 || true
        docker network rm "${PROJECT}_default" >/dev/null 2>&1 || true
    fi
    rm -rf "$workdir"
    if [[ $rc -eq 0 ]]; then
        log "done in $(( $(date +%s) - started ))s; the figures: $OUT/summary.json"
    else
        log "FAILED (exit $rc) after $(( $(date +%s) - started ))s"
    fi
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

# -- 0. the images --------------------------------------------------------------------------
if [[ "$BASE_IMAGE" == applied-index-conformance/base:* ]]; then
    BASE_IMAGE="$BASE_IMAGE" docker/build-base.sh
fi
build() {  # tag, dockerfile, context, extra args
    local tag=$1 file=$2 context=$3 t0
    shift 3
    t0=$(date +%s)
    if ! DOCKER_BUILDKIT=0 docker build -f "$file" --build-arg "BASE_IMAGE=$BASE_IMAGE" \
            -t "$tag" "$@" "$context" >"$workdir/build.log" 2>&1; then
        tail -n 40 "$workdir/build.log" >&2
        fail "could not build $tag"
    fi
    log "built $tag in $(( $(date +%s) - t0 ))s"
}
if [[ "${FORCE_BUILD:-}" == 1 ]] || ! docker image inspect "$REDIS_IMAGE" >/dev/null 2>&1; then
    mkdir -p "$workdir/redis-context"
    build "$REDIS_IMAGE" "$HERE/Dockerfile.redis" "$workdir/redis-context"
fi
# the worker runs the package of REV: rebuilt when that source tree changed
if [[ "$REV" == worktree ]]; then
    source_id="worktree-$(git ls-files -z --cached --others --exclude-standard |
        { xargs -0 sha256sum 2>/dev/null || true; } | sha256sum | cut -c1-40)"
else
    source_id=$(git rev-parse "$REV^{tree}") || fail "REV=$REV is not a git revision"
fi
have=$(docker image inspect -f '{{index .Config.Labels "conformance.source-tree"}}' \
       "$WORKER_IMAGE" 2>/dev/null || true)
if [[ "${FORCE_BUILD:-}" == 1 || "$have" != "$source_id" ]]; then
    t0=$(date +%s)
    mkdir -p "$workdir/src" "$workdir/worker-context/wheels"
    if [[ "$REV" == worktree ]]; then
        git ls-files -z --cached --others --exclude-standard | { tar --null --ignore-failed-read -T - -c 2>/dev/null || true; } |
            tar -x -C "$workdir/src"
    else
        git archive "$REV" | tar -x -C "$workdir/src"
    fi
    "$PYTHON" -m pip wheel --quiet --disable-pip-version-check --no-deps \
        -w "$workdir/worker-context/wheels" "$workdir/src" >"$workdir/pip.log" 2>&1 || {
        tail -n 20 "$workdir/pip.log" >&2; fail "pip wheel of the project ($REV)"; }
    wheel=$(ls "$workdir"/worker-context/wheels/applied_index_conformance-*.whl)
    # every dependency as a wheel, resolved by the image's own Python and pip (in a throwaway
    # container of the base image: pip evaluates the requirements' markers, such as redis's
    # python_full_version < "3.11.3", against the interpreter that runs it), with the host's
    # CA bundle (PIP_CERT, SSL_CERT_FILE, REQUESTS_CA_BUNDLE, else the system's) and proxy
    # settings, so that the image build itself needs no network
    ca=${PIP_CERT:-${SSL_CERT_FILE:-${REQUESTS_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}}}
    dl=(--rm --user "$(id -u):$(id -g)" -e HOME=/tmp -v "$workdir/worker-context/wheels:/wheels")
    [[ -n "$ca" && -f "$ca" ]] && dl+=(-v "$ca:/host-ca.crt:ro" -e PIP_CERT=/host-ca.crt)
    for v in PIP_INDEX_URL PIP_EXTRA_INDEX_URL HTTP_PROXY HTTPS_PROXY NO_PROXY http_proxy https_proxy no_proxy; do
        [[ -n "${!v:-}" ]] && dl+=(-e "$v")
    done
    docker run "${dl[@]}" "$BASE_IMAGE" python3 -m pip download --quiet --disable-pip-version-check \
        --only-binary=:all: --dest /wheels "/wheels/$(basename "$wheel")[scale]" \
        >"$workdir/pip.log" 2>&1 || {
        tail -n 20 "$workdir/pip.log" >&2; fail "pip download of the worker's dependencies"; }
    log "wheels for the worker ($REV): $(ls "$workdir/worker-context/wheels" | wc -l) in $(( $(date +%s) - t0 ))s"
    old=$(docker image inspect -f '{{.Id}}' "$WORKER_IMAGE" 2>/dev/null || true)
    build "$WORKER_IMAGE" "$HERE/Dockerfile.worker" "$workdir/worker-context" \
        --label "conformance.source-tree=$source_id"
    # the image it replaced, now untagged (kept when a container still uses it)
    if [[ -n "$old" && "$old" != "$(docker image inspect -f '{{.Id}}' "$WORKER_IMAGE")" ]]; then
        docker rmi "$old" >/dev/null 2>&1 || true
    fi
else
    log "$WORKER_IMAGE is up to date ($REV)"
fi

# -- 1. Redis -------------------------------------------------------------------------------
compose_up=1
compose up -d redis >/dev/null 2>&1 || { compose up -d redis; fail "compose up redis"; }
redis_id=$(compose ps -q redis)
for _ in $(seq 1 60); do
    [[ $(docker inspect -f '{{.State.Health.Status}}' "$redis_id") == healthy ]] && break
    sleep 1
done
[[ $(docker inspect -f '{{.State.Health.Status}}' "$redis_id") == healthy ]] ||
    fail "Redis did not become healthy within 60 s"
rcli() { docker exec "$redis_id" redis-cli "$@"; }
keys_before=$(rcli dbsize)
log "Redis up ($(docker exec "$redis_id" redis-server --version | cut -d' ' -f3)); keys: $keys_before"

# -- 2. the workers -------------------------------------------------------------------------
mapfile -t WORKERS < <(compose config --services | grep '^worker-' | sort)
log "${#WORKERS[@]} workers x ${TIME}s on $IMPL, database $DB"
t0=$(date +%s)
compose up -d --no-deps "${WORKERS[@]}" >/dev/null 2>&1 || fail "compose up ${WORKERS[*]}"
ids=()
for w in "${WORKERS[@]}"; do ids+=("$(compose ps -q "$w")"); done
codes=$(timeout "$RUN_TIMEOUT" docker wait "${ids[@]}") ||
    fail "the workers did not finish within RUN_TIMEOUT=${RUN_TIMEOUT}s"
workers_s=$(( $(date +%s) - t0 ))
i=0
for code in $codes; do
    w=${WORKERS[$i]}
    compose logs --no-color "$w" 2>/dev/null | grep -E '\| (FOUND|[0-9]+ sequences|conformance )' |
        sed 's/^/  /' >&2 || true
    [[ $code == 0 ]] || { compose logs --no-color --tail 30 "$w" >&2; fail "$w exited $code"; }
    i=$((i + 1))
done
log "the workers finished in ${workers_s}s"

# -- 3. what they left in the shared database ------------------------------------------------
keys_after=$(rcli dbsize)
# each key of the database (conformance-explore: + Hypothesis' binary key of the test, in hex,
# + its suffix, such as .secondary) with the number of examples its set holds
keys_lua='local out = {}
for _, k in ipairs(redis.call("KEYS", ARGV[1] .. "*")) do
  local rest = string.sub(k, #ARGV[1] + 1)
  local digest, suffix = string.match(rest, "^(.-)(%.%a+)$")
  if digest == nil then digest, suffix = rest, "" end
  local hex = string.gsub(digest, ".", function(c) return string.format("%02x", string.byte(c)) end)
  table.insert(out, redis.call("SCARD", k) .. " " .. ARGV[1] .. hex .. suffix)
end
return out'
rcli eval "$keys_lua" 0 conformance-explore: | sort -k2 >"$OUT/redis-keys.txt"
log "Redis keys: $keys_before before the workers, $keys_after after:"
sed 's/^/  /' "$OUT/redis-keys.txt" >&2

# -- 4. one more worker, one sequence of its own: with the shared database, and without -----
one_more() {  # name, database options...
    local name=$1
    shift
    compose run --rm --no-deps -T "${WORKERS[0]}" explore --impl "$IMPL" --examples 1 \
        --seed 4242 "$@" --out "/found/$name" --json "/found/$name/explore.json" \
        --jobs 1 >"$workdir/$name.log" 2>&1 || { cat "$workdir/$name.log" >&2; fail "worker $name"; }
    grep -E '^(FOUND|[0-9]+ sequences)' "$workdir/$name.log" | sed 's/^/  /' >&2 || true
}
log "one more worker, --examples 1, with the shared database:"
one_more late --database "$DB"
log "the same without it (the control):"
one_more control --no-database

# -- 5. collect -----------------------------------------------------------------------------
compose run --rm --no-deps -T collect >"$workdir/collect.log" 2>"$workdir/collect.err" ||
    { cat "$workdir/collect.log" "$workdir/collect.err" >&2; fail "collect"; }
sed 's/^/  /' "$workdir/collect.log" >&2

# -- 6. copy out, replay --------------------------------------------------------------------
docker run --rm --network none -v "${PROJECT}_found:/found:ro" --entrypoint tar "$WORKER_IMAGE" \
    -C /found -c . | tar -x -C "$OUT"
mapfile -t MERGED < <(cd "$OUT/merged" && ls -1 ./*.yaml 2>/dev/null | sed 's#^\./##')
[[ ${#MERGED[@]} -gt 0 ]] || log "no fixture was found (nothing to replay)"
# the fixtures as copied out, replayed in a fresh container of the worker image
replay='for f in "$@"; do
  conformance replay "/merged/$f" --impl "$IMPL" >/dev/null 2>&1; red=$?
  if [ "$IMPL" = reference ]; then green=-; else
    conformance replay "/merged/$f" --impl reference >/dev/null 2>&1; green=$?; fi
  echo "$f $red $green"
done'
docker run --rm --network none -e IMPL="$IMPL" -v "$OUT/merged:/merged:ro" --entrypoint /bin/sh \
    "$WORKER_IMAGE" -c "$replay" replay "${MERGED[@]}" >"$OUT/replays.txt" ||
    fail "the replays did not run"
bad=0
while read -r f red green; do
    verdict="red on $IMPL"
    [[ $red == 1 ]] || { verdict="NOT RED on $IMPL (exit $red)"; bad=1; }
    if [[ $green == 0 ]]; then verdict+=", green on the reference"
    elif [[ $green != - ]]; then verdict+=", NOT GREEN on the reference (exit $green)"; bad=1; fi
    log "replay $f: $verdict"
done <"$OUT/replays.txt"
[[ $bad == 0 ]] || fail "a merged fixture does not replay red on $IMPL and green on the reference"

# -- 7. the figures -------------------------------------------------------------------------
"$PYTHON" - "$OUT" "$keys_before" "$keys_after" "$workers_s" "$TIME" "$IMPL" "${WORKERS[@]}" <<'EOF'
import json, sys
from pathlib import Path

out, before, after, wall, budget, impl, *workers = sys.argv[1:]
out = Path(out)
def load(name):
    return json.loads((out / name / "explore.json").read_text())
ws = {w: load(w) for w in workers}
merged = json.loads((out / "merged.json").read_text())
keys = [line.split(" ", 1) for line in (out / "redis-keys.txt").read_text().splitlines() if line]
replays = [line.split() for line in (out / "replays.txt").read_text().splitlines() if line]
def found(r):
    return sorted({f["requirement"] for f in r["findings"]})
summary = {
    "impl": impl, "time_budget_s": float(budget), "workers_wall_s": int(wall),
    "workers": {w: {"seed": r["seed"], "sequences": r["examples"], "steps": r["steps"],
                    "duration_s": round(r["duration_s"], 1), "campaigns": r["campaigns"],
                    "findings": len(r["findings"]),
                    "fixtures": sum(1 for f in r["findings"] if f["path"] and not f["rejected"]),
                    "requirements": found(r)}
                for w, r in ws.items()},
    "sequences": sum(r["examples"] for r in ws.values()),
    "steps": sum(r["steps"] for r in ws.values()),
    "fixtures_before_collect": sum(1 for r in ws.values() for f in r["findings"]
                                   if f["path"] and not f["rejected"]),
    "not_green_before_collect": sum(1 for r in ws.values() for f in r["findings"] if f["rejected"]),
    "collect": {"files": merged["files"], "kept": len(merged["kept"]),
                "dropped": len(merged["dropped"]), "not_green": len(merged["rejected"]),
                "kept_files": [Path(k["path"]).name for k in merged["kept"]]},
    "redis": {"keys_before": int(before), "keys_after": int(after),
              "examples_by_key": {k: int(n) for n, k in keys}},
    "late_worker_with_database": {"sequences": (late := load("late"))["examples"],
                                  "findings": len(late["findings"]), "requirements": found(late)},
    "late_worker_without_database": {"sequences": (ctl := load("control"))["examples"],
                                     "findings": len(ctl["findings"]), "requirements": found(ctl)},
    "replays": [{"fixture": f, "red_on_impl": red == "1",
                 "green_on_reference": None if green == "-" else green == "0"}
                for f, red, green in replays],
}
(out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
print(f"scale-out: {len(ws)} workers x {budget}s on {impl}: {summary['sequences']} sequences, "
      f"{summary['steps']} steps; {summary['fixtures_before_collect']} fixtures before collect, "
      f"{summary['collect']['kept']} after ({summary['collect']['dropped']} dropped); "
      f"Redis keys {before} -> {after} "
      f"({sum(summary['redis']['examples_by_key'].values())} examples); one more worker "
      f"with 1 sequence: {summary['late_worker_with_database']['findings']} finding(s) with "
      f"the shared database, {summary['late_worker_without_database']['findings']} without",
      file=sys.stderr)
EOF
