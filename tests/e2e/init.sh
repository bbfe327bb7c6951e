#!/bin/sh
# /init of the QEMU end-to-end swap test's guest (busybox sh; see README.md).
#
# Brings swap up (nbdkit serving the plugin, attached through the kernel's NBD client;
# or ramzswapctl; or the kernel's zram), runs the workload under memory pressure,
# brings swap down again and prints exactly one "E2E-RESULT: PASS|FAIL ..." line.
# Settings come from /e2e/config, written by run-e2e.sh. A static, mlocked watchdog
# prints the FAIL line and reboots if the test does not finish in time; QEMU runs
# with -no-reboot, so any reboot ends the run.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin

mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t tmpfs -o mode=0755 tmpfs /run
# SCENARIO SWAP CTL CTL_ENV CTL_ARGS DISKSIZE MEMLIMIT PLUGIN_CMD MKSWAP STATS
# WORKLOAD_MIB CGROUP_MAX DEADLINE SYSCTLS
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

# nbdkit in the foreground, backgrounded by this shell, so it keeps running in the
# guest's root cgroup outside the workload's memory limit.
nbd_up() {
	modprobe nbd nbds_max=2 || finish "FAIL modprobe nbd"
	# shellcheck disable=SC2086
	nbdkit -f -P /run/nbdkit.pid -U /run/nbd.sock $PLUGIN_CMD &
	NBDKIT_PID=$!
	tries=0
	while [ ! -s /run/nbdkit.pid ]; do
		kill -0 "$NBDKIT_PID" 2>/dev/null ||
			finish "FAIL nbdkit exited at start-up: $PLUGIN_CMD"
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
	DEV=/dev/nbd0
}

ctl_up() {
	eval "env $CTL_ENV $CTL up $CTL_ARGS" || finish "FAIL ramzswapctl up"
	DEV=/dev/nbd0
	NBDKIT_PID=$(cat /run/ramzswap/nbd0.pid 2>/dev/null)
	STATS=/run/ramzswap/nbd0.stats
	[ -n "$NBDKIT_PID" ] || finish "FAIL ramzswapctl up left no pid file"
}

# zram's mem_limit is its memlimit; the compressor is its default.
zram_up() {
	modprobe zram num_devices=1 || finish "FAIL modprobe zram"
	echo "${MEMLIMIT:-0}" >/sys/block/zram0/mem_limit || finish "FAIL zram mem_limit"
	echo "$DISKSIZE" >/sys/block/zram0/disksize || finish "FAIL zram disksize"
	mkswap /dev/zram0 >/dev/null || finish "FAIL mkswap /dev/zram0"
	/usr/sbin/swapon -d -p 100 /dev/zram0 || finish "FAIL swapon /dev/zram0"
	DEV=/dev/zram0
	echo "e2e: zram0: $(cat /sys/block/zram0/comp_algorithm)"
}

if [ "$SWAP" = zram ]; then
	zram_up
elif [ -n "$CTL" ]; then
	ctl_up
else
	nbd_up
fi
echo 100 >/proc/sys/vm/swappiness
for setting in $SYSCTLS; do
	sysctl -w "$setting" || finish "FAIL sysctl -w $setting"
done
echo "e2e: swapping on $DEV ($(awk '/SwapTotal/ { print int($2 / 1024) }' /proc/meminfo) MiB);" \
	"vm.page-cluster=$(cat /proc/sys/vm/page-cluster)" \
	"vm.watermark_boost_factor=$(cat /proc/sys/vm/watermark_boost_factor)" \
	"vm.min_free_kbytes=$(cat /proc/sys/vm/min_free_kbytes)"

start=$(cut -d' ' -f1 /proc/uptime)
oom_kills0=$(awk '/^oom_kill / { print $2 }' /proc/vmstat)
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
nofit)
	/e2e/workload --mib "$WORKLOAD_MIB" --mix random &
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
dmesg >/run/dmesg.txt
echo "e2e: kernel messages: $(grep -c 'nbd0' /run/dmesg.txt) about nbd0," \
	"$(grep -ci 'error on swap' /run/dmesg.txt) swap I/O errors," \
	"$(grep -c 'Out of memory' /run/dmesg.txt) OOM kills"
grep -E 'nbd0|rror on swap|Out of memory|Killed process|ramzswap|sysrq' /run/dmesg.txt |
	head -n 20 | sed 's/^/e2e: dmesg: /'

if [ -n "$STATS" ]; then
	echo "e2e: ramzswap stats ($STATS):"
	/e2e/sockcat "$STATS" | sed 's/^/e2e-stats: /'
fi
if [ -n "$NBDKIT_PID" ]; then
	kill -0 "$NBDKIT_PID" 2>/dev/null || finish "FAIL nbdkit died during the test"
	echo "e2e: nbdkit memory:" \
		"$(grep -E '^Vm(HWM|RSS|Lck)' "/proc/$NBDKIT_PID/status" | tr -s ' \t\n' ' ')"
fi

# The no-fit workload must end in an OOM kill (SIGKILL), not in a hang; every other
# one must finish and verify every page.
if [ "$SCENARIO" = nofit ]; then
	[ "$rc" = 137 ] || finish "FAIL no-fit workload was not killed (exit status $rc)"
	# The kernel's own count, not its log: a full device logs thousands of
	# refused writes after the kill, and they can push it out of the ring buffer.
	oom_kills=$(($(awk '/^oom_kill / { print $2 }' /proc/vmstat) - oom_kills0))
	[ "$oom_kills" -ge 1 ] ||
		finish "FAIL no-fit workload died (exit status $rc) but not by the OOM killer"
	echo "e2e: no-fit workload OOM-killed after $(awk "BEGIN { print $end - $start }") s ($oom_kills OOM kills in /proc/vmstat)"
else
	[ "$rc" = 0 ] || finish "FAIL workload (exit status $rc)"
fi

# Down: no swap, no attached device and no server may be left.
if [ "$SWAP" = zram ]; then
	swapoff /dev/zram0 || finish "FAIL swapoff /dev/zram0"
elif [ -n "$CTL" ]; then
	$CTL status | sed 's/^/e2e-status: /'
	$CTL down || finish "FAIL ramzswapctl down"
	grep -q '^/dev/nbd' /proc/swaps && finish "FAIL swap left on after ramzswapctl down"
	[ -e /sys/block/nbd0/pid ] && finish "FAIL /dev/nbd0 still attached after down"
	kill -0 "$NBDKIT_PID" 2>/dev/null && finish "FAIL nbdkit still running after down"
	echo "e2e: ramzswapctl down left no swap, no nbd device, no nbdkit"
else
	swapoff /dev/nbd0 || finish "FAIL swapoff /dev/nbd0"
fi
finish "PASS"
