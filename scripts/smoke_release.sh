#!/usr/bin/env bash
# Smoke test of release binaries before they are published: the release workflow runs it on the
# Linux x64 archive that `deno task compile` packs, which is the only place the compiled binaries
# ever run before users get them. Runnable against any directory holding `half-tunnel`,
# `ht-server` and `ht-client` (ht-server is `half-tunnel server`, ht-client `half-tunnel client`,
# as scripts/compile.ts bakes them):
#
#   scripts/smoke_release.sh DIR
#
# Checks, stopping at the first failure (exit 1, naming the step and showing the logs):
#   1. `--version` of all three prints this checkout's version (deno.json);
#   2. `keygen` prints a key, a different one each time;
#   3. `check` accepts every sample in configs/ given a key of our own, and refuses the sample key;
#   4. `demo` passes its end-to-end self-check and exits 0 on Ctrl-C;
#   5. an ht-server + ht-client pair carries a file through the SOCKS5 proxy (curl from a local
#      python3 HTTP server) with its sha256 intact, and both stop cleanly.
# Everything listens on 127.0.0.1 on ports the kernel picks (read back from the logs) and dials
# nothing else. Needs curl, python3, sha256sum and timeout. Every process it starts is stopped and
# its temporary directory removed on any exit.
set -euo pipefail

usage() {
  echo "usage: $0 DIR  (DIR holds half-tunnel, ht-server and ht-client)" >&2
  exit 2
}
[ $# -eq 1 ] || usage
dir=$(cd "$1" && pwd) || usage
root=$(cd "$(dirname "$0")/.." && pwd)
for b in half-tunnel ht-server ht-client; do
  [ -x "$dir/$b" ] || { echo "smoke: $dir/$b is missing or not executable" >&2; exit 2; }
done
ht="$dir/half-tunnel"
# Settings from the caller's environment (HT_LOG_LEVEL=warning would hide the lines read below)
# do not leak into the checks.
while read -r var; do unset "$var"; done < <(compgen -e | grep '^HT_' || true)
version=$(sed -n 's/^ *"version": *"\([^"]*\)".*/\1/p' "$root/deno.json")

work=$(mktemp -d "${TMPDIR:-/tmp}/ht-smoke.XXXXXX")
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
# Stopped from outside (Ctrl-C, a CI timeout): exit, which runs the cleanup.
trap 'exit 130' INT
trap 'exit 143' TERM

step=""
begin() {
  step=$1
  echo "smoke: $step"
}
fail() {
  echo "smoke: FAILED at \"$step\": $*" >&2
  for log in "$work"/*.log; do
    [ -e "$log" ] && { echo "--- ${log##*/}" >&2; cat "$log" >&2; }
  done
  exit 1
}

# Runs a short command with a time bound; its output goes to $work/out.log (and is echoed back).
run() {
  timeout 60 "$@" >"$work/out.log" 2>&1 || fail "\`${*#"$dir/"}\` exited $?"
  cat "$work/out.log"
  rm "$work/out.log"
}

# Waits (up to 60 s) until `log` matches the extended regex `re`; fails if process `pid` exits first.
wait_for() {
  local log=$1 re=$2 pid=$3
  for _ in $(seq 600); do
    grep -Eq "$re" "$log" && return 0
    kill -0 "$pid" 2>/dev/null || fail "the process exited before logging /$re/"
    sleep 0.1
  done
  fail "no /$re/ in ${log##*/} within 60 s"
}

# The port in the first line of `log` that the sed expression `expr` selects.
port_in() {
  sed -n "s/$2/\1/p" "$1" | head -1
}

# Stops `pid` with SIGTERM as an operator would and expects exit status 0 within 15 s.
stop() {
  local pid=$1 name=$2
  kill -TERM "$pid"
  for _ in $(seq 150); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -0 "$pid" 2>/dev/null && fail "$name did not stop within 15 s of SIGTERM"
  local status=0
  wait "$pid" || status=$?
  # Reaped: cleanup must not signal the number again.
  local kept=()
  for p in "${pids[@]}"; do [ "$p" = "$pid" ] || kept+=("$p"); done
  pids=("${kept[@]}")
  [ "$status" -eq 0 ] || fail "$name exited $status after SIGTERM"
  if grep -q "internal error" "$work/$name.log"; then fail "$name logged an internal error"; fi
}

begin "--version prints $version"
for b in half-tunnel ht-server ht-client; do
  out=$(run "$dir/$b" --version)
  case "$out" in
    *"$version"*) echo "  $b: $out" ;;
    *) fail "$b --version printed \"$out\", not $version" ;;
  esac
done

begin "keygen prints a fresh key"
key=$(run "$ht" keygen)
other=$(run "$ht" keygen)
[[ "$key" =~ ^[A-Za-z0-9_-]{32,}$ ]] || fail "keygen printed \"$key\", not a key"
[ "$key" != "$other" ] || fail "keygen printed the same key twice"

begin "check accepts the samples in configs/ with our key, refuses the sample key"
for f in "$root"/configs/*; do
  case "$f" in
    *.toml) args=(check -c "$f") ;;
    # A YAML sample is a server's when it has a server section (as src/config/docs_test.ts reads it).
    *.yaml) if grep -q '^server:' "$f"; then args=(check server --config "$f"); else
      args=(check client --config "$f"); fi ;;
    *) continue ;;
  esac
  HT_AUTH_KEY=$key run "$ht" "${args[@]}" --quiet >/dev/null
  echo "  ${f#"$root/"}: valid"
done
status=0
env -u HT_AUTH_KEY timeout 60 "$ht" check server --config "$root/configs/server.yaml" --quiet \
  >"$work/out.log" 2>&1 || status=$?
[ "$status" -eq 2 ] || fail "the sample key in configs/server.yaml was not refused (exit $status)"
grep -q "sample key" "$work/out.log" || fail "the refusal does not say it is the sample key"
rm "$work/out.log"

begin "demo passes its end-to-end self-check"
"$ht" demo --socks-port 0 >"$work/demo.log" 2>&1 &
demo=$!
pids+=("$demo")
wait_for "$work/demo.log" "end-to-end check (passed|FAILED)" "$demo"
grep -q "end-to-end check passed" "$work/demo.log" || fail "the demo's self-check failed"
stop "$demo" demo

begin "ht-server + ht-client carry a file through SOCKS5"
HT_AUTH_KEY=$key "$dir/ht-server" --set server.upstream_addr=127.0.0.1:0 \
  --set server.downstream_addr=127.0.0.1:0 --set server.allow_private=true \
  >"$work/ht-server.log" 2>&1 &
server=$!
pids+=("$server")
# Either role says it runs: an ht-server built as a client fails here at once, not after 60 s.
wait_for "$work/ht-server.log" "(server|client) running" "$server"
grep -q "server running" "$work/ht-server.log" || fail "ht-server does not run a server"
up=$(port_in "$work/ht-server.log" '.*legs on 127\.0\.0\.1:\([0-9]*\) (\/upstream).*')
down=$(port_in "$work/ht-server.log" '.*legs on 127\.0\.0\.1:\([0-9]*\) (\/downstream).*')
if [ -z "$up" ] || [ -z "$down" ]; then fail "no leg ports in the server's log"; fi

HT_AUTH_KEY=$key "$dir/ht-client" --set "client.upstream_url=ws://127.0.0.1:$up/upstream" \
  --set "client.downstream_url=ws://127.0.0.1:$down/downstream" \
  --set client.socks5.listen=127.0.0.1:0 >"$work/ht-client.log" 2>&1 &
client=$!
pids+=("$client")
wait_for "$work/ht-client.log" "session .* established" "$client"
socks=$(port_in "$work/ht-client.log" '.*SOCKS5 proxy listening on 127\.0\.0\.1:\([0-9]*\).*')
[ -n "$socks" ] || fail "no SOCKS5 port in the client's log"

mkdir "$work/www"
head -c 8388608 /dev/urandom >"$work/www/payload"
python3 -u -m http.server 0 --bind 127.0.0.1 --directory "$work/www" >"$work/http.log" 2>&1 &
web=$!
pids+=("$web")
wait_for "$work/http.log" "port [0-9]+" "$web"
webport=$(port_in "$work/http.log" '.* port \([0-9]*\).*')
curl -fsS --max-time 60 --socks5-hostname "127.0.0.1:$socks" -o "$work/fetched" \
  "http://127.0.0.1:$webport/payload" 2>"$work/curl.log" || fail "curl through the tunnel failed"
sent=$(sha256sum <"$work/www/payload" | cut -d' ' -f1)
got=$(sha256sum <"$work/fetched" | cut -d' ' -f1)
[ "$sent" = "$got" ] || fail "sha256 differs: sent $sent, received $got"
echo "  8 MiB through the tunnel, sha256 $got"
stop "$client" ht-client
stop "$server" ht-server

echo "smoke: all checks passed ($dir)"
