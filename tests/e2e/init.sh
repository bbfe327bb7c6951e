#!/bin/sh
# /init of the QEMU end-to-end swap test's guest (busybox sh; see README.md).
#
# Serves the plugin with nbdkit on a unix socket, attaches it as /dev/nbd0 through the
# kernel's NBD client, swaps on it, runs the workload under memory pressure and prints
# exactly one "E2E-RESULT: PASS|FAIL ..." line. Settings come from /e2e/config,
# written by run-e2e.sh. A static, mlocked watchdog prints the FAIL line and reboots
# if the test does not finish in time; QEMU runs with -no-reboot, so any reboot ends
# the run.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin

mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t tmpfs -o mode=0755 tmpfs /run
# SCENARIO PLUGIN_CMD MKSWAP STATS WORKLOAD_MIB CGROUP_MAX DEADLINE SYSCTLS
# shellcheck source=/dev/null
. /e2e/config

finish() {
	echo "E2E-RESULT: $*"
	[ -n "$WATCHDOG_PID" ] && kill "$WATCHDOG_PID"
	reboot -f
	sleep 60
}

/e2e/watchdog "$DEADLINE" &
WATCHDOG_PID=$!
echo "e2e: guest up after $(cut -d' ' -f1 /proc/uptime) s: scenario $SCENARIO, $(nproc) CPU, " \
	"$(awk '/MemTotal/ { print int($2 / 1024) }' /proc/meminfo) MiB RAM"

modprobe nbd nbds_max=2 || finish "FAIL modprobe nbd"

# nbdkit in the foreground, backgrounded by this shell, so it keeps running in the
# guest's root cgroup outside the workload's memory limit.
# shellcheck disable=SC2086
nbdkit -f -P /run/nbdkit.pid -U /run/nbd.sock $PLUGIN_CMD &
NBDKIT_PID=$!
tries=0
while [ ! -s /run/nbdkit.pid ]; do
	kill -0 "$NBDKIT_PID" 2>/dev/null || finish "FAIL nbdkit exited at start-up: $PLUGIN_CMD"
	tries=$((tries + 1))
	[ "$tries" -gt 600 ] && finish "FAIL nbdkit wrote no pid file in 60 s"
	sleep 0.1
done
echo -1000 >"/proc/$NBDKIT_PID/oom_score_adj"

# Never -timeout: with one, a slow server gets its connection torn down.
nbd-client -unix /run/nbd.sock /dev/nbd0 -N swap -b 4096 -swap ||
	finish "FAIL nbd-client could not attach /dev/nbd0"
if [ "$MKSWAP" = yes ]; then
	mkswap /dev/nbd0 >/dev/null || finish "FAIL mkswap /dev/nbd0"
fi
swapon -d /dev/nbd0 || finish "FAIL swapon -d /dev/nbd0"
echo 100 >/proc/sys/vm/swappiness
for setting in $SYSCTLS; do
	sysctl -w "$setting" || finish "FAIL sysctl -w $setting"
done
echo "e2e: swapping on /dev/nbd0 ($(awk '/SwapTotal/ { print int($2 / 1024) }' /proc/meminfo) MiB)" \
	"served by: nbdkit $PLUGIN_CMD"

start=$(cut -d' ' -f1 /proc/uptime)
case "$SCENARIO" in
cgroup)
	mount -t cgroup2 none /sys/fs/cgroup || finish "FAIL mount cgroup2"
	echo +memory >/sys/fs/cgroup/cgroup.subtree_control
	mkdir /sys/fs/cgroup/e2e
	echo "$CGROUP_MAX" >/sys/fs/cgroup/e2e/memory.max
	sh -c 'echo $$ >/sys/fs/cgroup/e2e/cgroup.procs && exec "$@"' workload \
		/e2e/workload --mib "$WORKLOAD_MIB" &
	;;
global)
	/e2e/workload --mib "$WORKLOAD_MIB" &
	;;
*)
	finish "FAIL unknown scenario $SCENARIO"
	;;
esac
WORKLOAD_PID=$!
wait "$WORKLOAD_PID"
rc=$?
end=$(cut -d' ' -f1 /proc/uptime)
echo "e2e: workload exit status $rc after $(awk "BEGIN { print $end - $start }") s"

if [ "$SCENARIO" = cgroup ]; then
	echo "e2e: cgroup memory.events: $(tr '\n' ' ' </sys/fs/cgroup/e2e/memory.events)"
fi
echo "e2e: /proc/swaps: $(tail -n +2 /proc/swaps)"
echo "e2e: kernel messages: $(dmesg | grep -c 'nbd0') about nbd0," \
	"$(dmesg | grep -ci 'error on swap') swap I/O errors," \
	"$(dmesg | grep -c 'Out of memory') OOM kills"
dmesg | grep -E 'nbd0|rror on swap|Out of memory|Killed process' | head -n 20 | sed 's/^/e2e: dmesg: /'

if [ -n "$STATS" ]; then
	echo "e2e: ramzswap stats ($STATS):"
	/e2e/sockcat "$STATS" | sed 's/^/e2e-stats: /'
fi
kill -0 "$NBDKIT_PID" 2>/dev/null || finish "FAIL nbdkit died during the test"
echo "e2e: nbdkit memory: $(grep -E '^Vm(HWM|RSS|Lck)' "/proc/$NBDKIT_PID/status" | tr -s ' \t\n' ' ')"

[ "$rc" = 0 ] || finish "FAIL workload (exit status $rc)"
finish "PASS"
