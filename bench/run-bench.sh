#!/bin/sh
# Builds ramzswap and runs the whole nbdkit comparison of issue 6 in one go: null,
# memory allocator=sparse and allocator=zstd, the naive LZO plugin, and ramzswap,
# 256 MiB, 4 KiB and 64 KiB requests, sequential and random, 32 in flight.
# usage: bench/run-bench.sh [BUILDDIR] [bench_nbd options, e.g. --quick]
# BUILDDIR defaults to ./build of the source tree; it is set up if missing.
set -eu
src=$(cd "$(dirname "$0")/.." && pwd)
build=$src/build
case ${1-} in
"" | -*) ;;
*) build=$1; shift ;;
esac
[ -f "$build/build.ninja" ] || meson setup "$build" "$src"
meson compile -C "$build"
echo "uptime: $(uptime)"
exec "$build/bench/bench_nbd" --naive "$build/bench/naive.so" \
        --ramzswap "$build/plugin/ramzswap.so" "$@"
