#!/usr/bin/env bash
# Smoke test of the README's `make run`, from a fresh clone of the committed HEAD.
#
#   scripts/smoke_make_run.sh [repo]        (default: the repository holding this script)
#
# Clones the repo into a temporary directory, runs `make run` there (it creates its own .venv,
# runs `treasurer init --demo`, then `treasurer serve`) on a free loopback port, waits for
# /health, then spends as the demo's procurement_bot with its session token from
# .treasurer/demo-sessions.json: $150.00 on pb-base must be authorized (pending), $250.00 must
# be denied (above its $200 per-transaction maximum). The server runs in its own process group
# (setsid) and that group is stopped on every exit path. Prints one result line.
#
# Environment: SMOKE_INSTALL_TIMEOUT_S (default 300: clone + venv + install + start),
# SMOKE_KEEP=1 keeps the temporary directory, PYTHON is passed on to make.
set -euo pipefail

INSTALL_TIMEOUT_S="${SMOKE_INSTALL_TIMEOUT_S:-300}"
STOP_TIMEOUT_S=15
HOST=127.0.0.1
RECIPIENT=0x9999999999999999999999999999999999999999

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(git -C "${1:-$here/..}" rev-parse --show-toplevel)"
work="$(mktemp -d "${TMPDIR:-/tmp}/treasurer-smoke.XXXXXX")"
clone="$work/treasurer"
log="$work/make-run.log"
pidfile="$work/server.pgid"
pgid=""
started_s=$SECONDS

say() { printf 'smoke_make_run: %s\n' "$*" >&2; }

fail() {
    say "FAIL: $*"
    if [[ -f "$log" ]]; then
        say "last lines of the make run log:"
        tail -n 40 "$log" >&2 || true
    fi
    echo "make run smoke: FAIL ($*)"
    exit 1
}

stop_server() {
    [[ -n "$pgid" ]] || return 0
    if kill -0 -- "-$pgid" 2>/dev/null; then
        kill -TERM -- "-$pgid" 2>/dev/null || true
        local waited=0
        while kill -0 -- "-$pgid" 2>/dev/null && ((waited < STOP_TIMEOUT_S * 10)); do
            sleep 0.1
            waited=$((waited + 1))
        done
        if kill -0 -- "-$pgid" 2>/dev/null; then
            say "server group $pgid ignored SIGTERM for ${STOP_TIMEOUT_S}s; sending SIGKILL"
            kill -KILL -- "-$pgid" 2>/dev/null || true
        fi
    fi
    pgid=""
}

cleanup() {
    local status=$?
    trap - EXIT INT TERM
    stop_server
    if [[ "${SMOKE_KEEP:-0}" == 1 ]]; then
        say "kept $work"
    else
        rm -rf "$work"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'fail "interrupted"' INT TERM

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# One request: prints "<status> <body>" (curl bounded to 10 s).
request() {
    local method=$1 path=$2 token=${3:-} body=${4:-}
    local args=(--silent --show-error --max-time 10 -X "$method" -w '\n%{http_code}')
    [[ -n "$token" ]] && args+=(-H "Authorization: Bearer $token")
    [[ -n "$body" ]] && args+=(-H "Content-Type: application/json" --data "$body")
    local out
    out="$(curl "${args[@]}" "http://$HOST:$port$path")" || return 1
    printf '%s %s\n' "${out##*$'\n'}" "${out%$'\n'*}"
}

json_field() { # json_field <field> <json text>
    python3 -c 'import json, sys; print(json.loads(sys.argv[2]).get(sys.argv[1], ""))' "$1" "$2"
}

spend() { # spend <amount>: sets $state to the authorization's state; fails unless 201
    local body response
    body="{\"wallet\": \"pb-base\", \"amount\": \"$1\", \"asset\": \"USDC\", \"recipient\": \"$RECIPIENT\"}"
    response="$(request POST /v1/authorizations "$token" "$body")" ||
        fail "POST /v1/authorizations ($1) did not answer"
    [[ "${response%% *}" == 201 ]] || fail "POST /v1/authorizations (\$$1) answered $response"
    state="$(json_field state "${response#* }")"
}

port="$(free_port)"
git clone --quiet "$repo" "$clone" || fail "git clone $repo"
head="$(git -C "$clone" rev-parse --short HEAD)"
say "cloned $repo at $head into $clone; make run on $HOST:$port (log: $log)"

# Own session and process group; the group leader writes its pid (= the group id) first.
(
    cd "$clone"
    exec env -u TREASURER_DATA_DIR -u TREASURER_DATABASE_URL \
        TREASURER_HOST="$HOST" TREASURER_PORT="$port" \
        setsid sh -c 'echo $$ > "$0"; exec make run' "$pidfile"
) >"$log" 2>&1 </dev/null &
launcher=$!
for _ in $(seq 100); do
    [[ -s "$pidfile" ]] && break
    sleep 0.1
done
[[ -s "$pidfile" ]] || fail "make run did not start"
pgid="$(cat "$pidfile")"

deadline=$((SECONDS + INSTALL_TIMEOUT_S))
until [[ "$(curl --silent --max-time 2 -o /dev/null -w '%{http_code}' "http://$HOST:$port/health" || true)" == 200 ]]; do
    if ! kill -0 -- "-$pgid" 2>/dev/null; then
        wait "$launcher" 2>/dev/null || true
        fail "make run exited before /health answered"
    fi
    ((SECONDS < deadline)) || fail "no /health within ${INSTALL_TIMEOUT_S}s"
    sleep 1
done
ready_s=$((SECONDS - started_s))

sessions="$clone/.treasurer/demo-sessions.json"
[[ -s "$sessions" ]] || fail "$sessions was not written"
token="$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["procurement_bot"])' "$sessions")" ||
    fail "no procurement_bot token in $sessions"

state=""
spend 150.00
[[ "$state" == pending ]] || fail "\$150.00 on pb-base: state '$state', expected 'pending'"
spend 250.00
[[ "$state" == denied ]] || fail "\$250.00 on pb-base: state '$state', expected 'denied'"

stop_server
echo "make run smoke: OK (clone $head, /health after ${ready_s}s, \$150.00 pending, \$250.00 denied, server stopped)"
