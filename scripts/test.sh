#!/bin/sh
# Install dependencies, build, and run every test: the plain build (unit, nbd,
# ramzswapctl and the QEMU end-to-end tests: cgroup, and whole-guest pressure that
# fits and that does not), then an AddressSanitizer + UBSan build (unit and nbd: the
# shell tool adds nothing there but minutes of sanitized shell start-ups).
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
meson test -C build-san --print-errorlogs --num-processes 2 --no-suite e2e \
    --no-suite ctl

# One closing line over both builds' gating tests (meson's own summary is per build).
python3 - build/meson-logs/testlog.json build-san/meson-logs/testlog.json <<'PY'
import json, sys
passed = failed = skipped = 0
for path in sys.argv[1:]:
    for line in open(path):
        r = json.loads(line)["result"]
        if r == "OK":
            passed += 1
        elif r == "SKIP":
            skipped += 1
        else:
            failed += 1
print(f"{passed} passed, {failed} failed, {skipped} skipped")
PY
