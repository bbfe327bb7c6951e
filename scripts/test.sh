#!/bin/sh
# Install dependencies, build, and run every test: the plain build (unit, nbd and the
# QEMU end-to-end test), then an AddressSanitizer + UBSan build (unit and nbd).
set -eu
cd "$(dirname "$0")/.."
scripts/install-deps.sh

meson setup build --reconfigure >/dev/null 2>&1 || meson setup build
meson compile -C build
meson test -C build --print-errorlogs --num-processes 2

meson setup build-san -Db_sanitize=address,undefined -Db_lundef=false \
    --reconfigure >/dev/null 2>&1 ||
    meson setup build-san -Db_sanitize=address,undefined -Db_lundef=false
meson compile -C build-san
meson test -C build-san --print-errorlogs --num-processes 2 --no-suite e2e
