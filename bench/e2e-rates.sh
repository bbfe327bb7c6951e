#!/bin/sh
# Pass and hang rates of the whole-guest swap scenarios, ramzswap beside zram.
#
#   bench/e2e-rates.sh [--runs N] [--jobs J] [--cases 'fit nofit'] [--swaps 'ramzswap zram']
#                      [--build DIR] [--workdir DIR] [-- run-e2e.sh options]
#
# Each run boots a fresh QEMU guest (tests/e2e/run-e2e.sh). ramzswap comes up through
# ramzswapctl with the settings `ramzswapctl up` applies; zram gets the same sysctls,
# disksize and memory limit, so the two differ only in the swap device.
#   fit:   a workload of 130% of MemAvailable; PASS = every page read back.
#   nofit: 300 MiB of incompressible pages; PASS = the OOM killer ended it and swap
#          came down cleanly.
# A run that printed no result before the guest's deadline (the watchdog's FAIL, or
# the host's timeout) counts as a hang; any other FAIL counts as a failure.
# Prints one line per case and swap, and a table at the end. Never a gate.
set -eu
src=$(cd "$(dirname "$0")/.." && pwd)
runs=10
jobs=1
cases="fit nofit"
swaps="ramzswap zram"
build=$src/build
workdir=$src/build/e2e-rates
while [ $# -gt 0 ]; do
	case $1 in
	--runs) runs=$2; shift 2 ;;
	--jobs) jobs=$2; shift 2 ;;
	--cases) cases=$2; shift 2 ;;
	--swaps) swaps=$2; shift 2 ;;
	--build) build=$2; shift 2 ;;
	--workdir) workdir=$2; shift 2 ;;
	--) shift; break ;;
	*) echo "usage: see the head of $0" >&2; exit 1 ;;
	esac
done
[ -f "$build/build.ninja" ] || meson setup "$build" "$src"
meson compile -C "$build" >/dev/null
mkdir -p "$workdir"

# The settings `ramzswapctl up` applies, read from the script itself.
sysctls=$(sed -n "s/^SYSCTLS='\(.*\)'$/\1/p" "$build/src/ramzswapctl")

# One series: run-e2e.sh --runs N for (case, swap), its log in $workdir.
series() {
	c=$1 s=$2 log=$workdir/$1-$2.log
	scenario=$([ "$c" = fit ] && echo global || echo nofit)
	# A pass takes under 100 s of guest time in either case; a hang is called at
	# the deadline.
	set -- --scenario "$scenario" --runs "$runs" --workdir "$workdir/$c-$s" \
		--deadline "$([ "$c" = fit ] && echo 200 || echo 150)"
	if [ "$s" = zram ]; then
		for kv in $sysctls; do set -- "$@" --sysctl "$kv"; done
		set -- "$@" --swap zram
	else
		set -- "$@" --plugin "$build/plugin/ramzswap.so" \
			--ctl "$build/src/ramzswapctl" --stat "$build/src/ramzswap-stat"
	fi
	# The kernel package is downloaded once and shared by every series.
	mkdir -p "$workdir/$c-$s" "$workdir/debs"
	ln -sfn "$workdir/debs" "$workdir/$c-$s/debs"
	"$src/tests/e2e/run-e2e.sh" "$@" >"$log" 2>&1 || true
	pass=$(grep -c '^run-e2e: run .*: PASS' "$log" || true)
	hang=$(grep -cE '^run-e2e: run .*: FAIL (watchdog|host timeout)' "$log" || true)
	echo "$c $s $runs $pass $hang $((runs - pass - hang))" >"$log.result"
	echo "e2e-rates: $c/$s: $pass of $runs passed, $hang hung ($log)"
}

echo "e2e-rates: $runs runs per case; sysctls for both: $sysctls; $(uptime)"
running=0
for c in $cases; do
	for s in $swaps; do
		series "$c" "$s" &
		running=$((running + 1))
		if [ "$running" -ge "$jobs" ]; then
			wait
			running=0
		fi
	done
done
wait
printf '%-6s %-9s %5s %5s %5s %5s\n' case swap runs pass hang fail
for c in $cases; do
	for s in $swaps; do
		# shellcheck disable=SC2046
		printf '%-6s %-9s %5s %5s %5s %5s\n' $(cat "$workdir/$c-$s.log.result")
	done
done
