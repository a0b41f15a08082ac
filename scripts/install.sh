#!/bin/sh
# Installs or upgrades half-tunnel from its release archives; safe to run from cron or a timer.
#
#   curl -fsSL https://github.com/half-tunnel/half-tunnel/releases/latest/download/install.sh | sh
#
# Environment:
#   HT_INSTALL_DIR  where the binaries go (default /usr/local/bin)
#   HT_VERSION      install this version (e.g. 0.2.0) instead of the latest
#   HT_BASE_URL     releases base URL (default https://github.com/$HT_REPO/releases); a mirror
#                   serves <base>/latest/download/VERSION and <base>/download/v<version>/<file>
#   HT_REPO         GitHub owner/name (default half-tunnel/half-tunnel)
#
# Exit codes: 0 installed, upgraded or already current; 1 usage or environment problem;
# 2 download failed; 3 checksum mismatch (nothing changed); 4 unsupported OS or architecture;
# 5 another install is running.
set -eu

INSTALL_DIR=${HT_INSTALL_DIR:-/usr/local/bin}
REPO=${HT_REPO:-half-tunnel/half-tunnel}
BASE_URL=${HT_BASE_URL:-https://github.com/$REPO/releases}
SYSTEMCTL=${HT_SYSTEMCTL:-systemctl}
BINARIES="half-tunnel ht-server ht-client"

say() { printf 'half-tunnel install: %s\n' "$*"; }
die() { code=$1; shift; say "error: $*" >&2; exit "$code"; }

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

[ -d "$INSTALL_DIR" ] || die 1 "install directory $INSTALL_DIR does not exist"
[ -w "$INSTALL_DIR" ] || die 1 "cannot write to $INSTALL_DIR (run as root or set HT_INSTALL_DIR)"

lock="${TMPDIR:-/tmp}/half-tunnel-install.lock"
mkdir "$lock" 2>/dev/null || die 5 "another install is running (remove $lock if it is stale)"
work=$(mktemp -d)
trap 'rm -rf "$work" "$lock"' EXIT INT TERM

if [ -n "${HT_VERSION:-}" ]; then
  version=${HT_VERSION#v}
  url="$BASE_URL/download/v$version"
else
  fetch "$BASE_URL/latest/download/VERSION" "$work/VERSION" || die 2 "cannot fetch $BASE_URL/latest/download/VERSION"
  version=$(tr -d ' \r\n' <"$work/VERSION")
  url="$BASE_URL/latest/download"
fi
case "$version" in
  '' | *[!0-9A-Za-z.+-]*) die 2 "bad version string from the release server: '$version'" ;;
esac

installed=""
if [ -x "$INSTALL_DIR/half-tunnel" ]; then
  installed=$("$INSTALL_DIR/half-tunnel" --version 2>/dev/null | tr -d ' \r\n' || true)
fi
if [ "$installed" = "$version" ]; then
  say "half-tunnel $version is already installed in $INSTALL_DIR; nothing to do"
  exit 0
fi

archive="half-tunnel_${version}_${os}_${arch}.tar.gz"
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

if command -v "$SYSTEMCTL" >/dev/null 2>&1; then
  for unit in half-tunnel-server half-tunnel-client; do
    if "$SYSTEMCTL" is-active --quiet "$unit" 2>/dev/null; then
      "$SYSTEMCTL" restart "$unit" || die 1 "restart of $unit failed"
      say "restarted $unit"
    fi
  done
fi
exit 0
