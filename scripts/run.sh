#!/bin/sh
# Build ramzswap and serve it with nbdkit in the foreground on a unix socket.
#
#   scripts/run.sh [SOCKET] [PARAM=VALUE ...]
#
# SOCKET (any argument containing a '/') defaults to $RAMZSWAP_SOCKET, else
# /run/ramzswap.sock. PARAM=VALUE arguments go to the plugin, e.g. disksize=4G
# memlimit=1G (see man/nbdkit-ramzswap-plugin.pod). Statistics are served on
# $RAMZSWAP_STATS (default /run/ramzswap.stats; set it empty for none) unless a
# stats=PATH argument says otherwise. $RAMZSWAP_BUILD names the build directory
# (default: build). Ctrl-C stops the server.
set -eu
cd "$(dirname "$0")/.."

sock=${RAMZSWAP_SOCKET:-/run/ramzswap.sock}
case "${1:-}" in
*/*)
    sock=$1
    shift
    ;;
esac
build=${RAMZSWAP_BUILD:-build}
stats=${RAMZSWAP_STATS-/run/ramzswap.stats}
given_stats=
for arg in "$@"; do
    case $arg in
    stats=*)
        stats=${arg#stats=}
        given_stats=1
        ;;
    esac
done
if [ -n "$stats" ] && [ -z "$given_stats" ]; then
    mkdir -p "$(dirname "$stats")"
    set -- "$@" "stats=$stats"
fi

scripts/install-deps.sh
[ -f "$build/build.ninja" ] || meson setup "$build"
meson compile -C "$build"

mkdir -p "$(dirname "$sock")"
# nbdkit leaves its socket behind when it stops, and will not bind over it.
if [ -S "$sock" ]; then
    if nbdinfo --size "nbd+unix:///?socket=$sock" >/dev/null 2>&1; then
        echo "run.sh: a server is already answering on $sock" >&2
        exit 1
    fi
    rm -f "$sock"
fi
cat <<EOF
ramzswap: serving on $sock (Ctrl-C stops it). To swap on it (root, nbd module):
  modprobe nbd
  nbd-client -unix $sock -b 4096 -swap /dev/nbd0
  swapon --discard -p 100 /dev/nbd0
Detach with: swapoff /dev/nbd0 && nbd-client -d /dev/nbd0
EOF
if [ -n "$stats" ]; then
    echo "Statistics: ramzswap-stat $stats  (built as $build/src/ramzswap-stat;"
    echo "  --watch 2 refreshes, --json for scripts)"
fi
exec nbdkit -f -U "$sock" "$build/plugin/ramzswap.so" "$@"
