#!/bin/sh
# Installs or upgrades half-tunnel from its release archives; safe to run from cron or a timer.
# `install.sh --help` (or `curl … | sh -s -- --help`) prints the usage: flags, environment and
# exit codes.
set -eu

INSTALL_DIR=${HT_INSTALL_DIR:-/usr/local/bin}
REPO=${HT_REPO:-half-tunnel/half-tunnel}
BASE_URL=${HT_BASE_URL:-https://github.com/$REPO/releases}
SYSTEMCTL=${HT_SYSTEMCTL:-systemctl}
BINARIES="half-tunnel ht-server ht-client"

say() { printf 'half-tunnel install: %s\n' "$*"; }
die() { code=$1; shift; say "error: $*" >&2; exit "$code"; }

usage() {
  cat <<'USAGE'
Usage: install.sh [--dry-run] [--help]
   or: curl -fsSL https://github.com/half-tunnel/half-tunnel/releases/latest/download/install.sh | sh
   or: curl -fsSL …/install.sh | sh -s -- --dry-run

Installs the latest half-tunnel release (half-tunnel, ht-server, ht-client) once its sha256
matches the release's checksums.txt, then restarts the half-tunnel-server and half-tunnel-client
units that are running. With that version already installed it does nothing.

  -n, --dry-run  say what would be fetched, verified, installed and restarted, and change
                 nothing (it reads the release's VERSION file to name the version)
  -h, --help     print this help and exit

Environment:
  HT_INSTALL_DIR  where the binaries go (default /usr/local/bin)
  HT_VERSION      install this version (e.g. 0.2.0) instead of the latest
  HT_BASE_URL     releases base URL (default https://github.com/$HT_REPO/releases); a mirror
                  serves <base>/latest/download/VERSION and <base>/download/v<version>/<file>
  HT_REPO         GitHub owner/name (default half-tunnel/half-tunnel)

Exit codes: 0 installed, upgraded, already current, or a dry run; 1 usage or environment
problem; 2 download failed; 3 checksum mismatch (nothing changed); 4 unsupported OS or
architecture; 5 another install is running.
USAGE
}

dry_run=""
for arg in "$@"; do
  case "$arg" in
    -h | --help) usage; exit 0 ;;
    -n | --dry-run) dry_run=1 ;;
    *) die 1 "unknown argument: $arg (install.sh --help prints the usage)" ;;
  esac
done

case "${HT_UNAME_S:-$(uname -s)}" in
  Linux) os=linux ;;
  Darwin) os=darwin ;;
  *) die 4 "unsupported OS: ${HT_UNAME_S:-$(uname -s)}" ;;
esac
case "${HT_UNAME_M:-$(uname -m)}" in
  x86_64 | amd64) arch=amd64 ;;
  aarch64 | arm64) arch=arm64 ;;
  *) die 4 "unsupported architecture: ${HT_UNAME_M:-$(uname -m)}" ;;
esac

# fetch URL FILE, where FILE "-" is standard output
if command -v curl >/dev/null 2>&1; then
  fetch() { curl -fsSL --retry 2 -o "$2" "$1"; }
elif command -v wget >/dev/null 2>&1; then
  fetch() { wget -q -O "$2" "$1"; }
else
  die 1 "need curl or wget"
fi
if command -v sha256sum >/dev/null 2>&1; then
  sha256() { sha256sum "$1" | cut -d' ' -f1; }
elif command -v shasum >/dev/null 2>&1; then
  sha256() { shasum -a 256 "$1" | cut -d' ' -f1; }
else
  die 1 "need sha256sum or shasum"
fi

problem=""
if [ ! -d "$INSTALL_DIR" ]; then
  problem="install directory $INSTALL_DIR does not exist"
elif [ ! -w "$INSTALL_DIR" ]; then
  problem="cannot write to $INSTALL_DIR (run as root or set HT_INSTALL_DIR)"
fi
if [ -n "$problem" ]; then
  [ -n "$dry_run" ] || die 1 "$problem"
  say "dry run: $problem, so a real run would stop here"
fi

# A dry run takes no lock and makes no files.
if [ -z "$dry_run" ]; then
  lock="${TMPDIR:-/tmp}/half-tunnel-install.lock"
  mkdir "$lock" 2>/dev/null || die 5 "another install is running (remove $lock if it is stale)"
  work=$(mktemp -d)
  trap 'rm -rf "$work" "$lock"' EXIT INT TERM
fi

if [ -n "${HT_VERSION:-}" ]; then
  version=${HT_VERSION#v}
  url="$BASE_URL/download/v$version"
else
  latest=$(fetch "$BASE_URL/latest/download/VERSION" -) ||
    die 2 "cannot fetch $BASE_URL/latest/download/VERSION"
  version=$(printf '%s' "$latest" | tr -d ' \r\n')
  url="$BASE_URL/latest/download"
fi
case "$version" in
  '' | *[!0-9A-Za-z.+-]*) die 2 "bad version string from the release server: '$version'" ;;
esac

installed=""
if [ -x "$INSTALL_DIR/half-tunnel" ]; then
  # "half-tunnel 1.2.0 (commit …, deno …)"; older releases printed the bare version.
  installed=$("$INSTALL_DIR/half-tunnel" --version 2>/dev/null |
    awk 'NR == 1 { print ($1 == "half-tunnel") ? $2 : $1 }' || true)
fi
if [ "$installed" = "$version" ]; then
  say "half-tunnel $version is already installed in $INSTALL_DIR; nothing to do"
  exit 0
fi

# The half-tunnel units that are running: an install restarts them onto the new binaries (asking
# changes nothing).
active_units() {
  command -v "$SYSTEMCTL" >/dev/null 2>&1 || return 0
  for unit in half-tunnel-server half-tunnel-client; do
    if "$SYSTEMCTL" is-active --quiet "$unit" 2>/dev/null; then echo "$unit"; fi
  done
}

archive="half-tunnel_${version}_${os}_${arch}.tar.gz"
if [ -n "$dry_run" ]; then
  say "dry run: would fetch $url/$archive"
  say "dry run: would fetch $url/checksums.txt and check the archive's sha256 against it"
  say "dry run: would install $BINARIES $version into $INSTALL_DIR${installed:+ (replacing $installed)}"
  units=$(active_units | tr '\n' ' ')
  if [ -n "$units" ]; then
    say "dry run: would restart ${units% } (running now)"
  else
    say "dry run: would restart nothing (no half-tunnel unit is running)"
  fi
  say "dry run: nothing was downloaded, written or restarted"
  exit 0
fi

fetch "$url/$archive" "$work/$archive" || die 2 "cannot download $url/$archive"
fetch "$url/checksums.txt" "$work/checksums.txt" || die 2 "cannot download $url/checksums.txt"
want=$(awk -v f="$archive" '$2 == f || $2 == "*" f { print $1 }' "$work/checksums.txt")
[ -n "$want" ] || die 3 "checksums.txt has no entry for $archive"
got=$(sha256 "$work/$archive")
[ "$want" = "$got" ] || die 3 "checksum mismatch for $archive (expected $want, got $got); nothing installed"
say "verified $archive"

mkdir "$work/x"
tar -xzf "$work/$archive" -C "$work/x" || die 2 "cannot unpack $archive"
for b in $BINARIES; do
  [ -f "$work/x/$b" ] || die 2 "$archive lacks $b"
done
# Copy next to the target first, then rename: a running binary is never half-written.
for b in $BINARIES; do
  cp "$work/x/$b" "$INSTALL_DIR/.$b.new"
  chmod 755 "$INSTALL_DIR/.$b.new"
  mv -f "$INSTALL_DIR/.$b.new" "$INSTALL_DIR/$b"
done
if [ -n "$installed" ]; then
  say "upgraded half-tunnel $installed -> $version in $INSTALL_DIR"
else
  say "installed half-tunnel $version in $INSTALL_DIR"
fi

for unit in $(active_units); do
  "$SYSTEMCTL" restart "$unit" || die 1 "restart of $unit failed"
  say "restarted $unit"
done
exit 0
