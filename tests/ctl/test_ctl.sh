#!/bin/sh
# Tests of ramzswapctl: every refusal of `up`, and the whole up/status/stat/down
# cycle with a real nbdkit serving the built plugin, while modprobe, nbd-client,
# swapon, swapoff, /sys/block, /proc/swaps and /proc/sys are stand-ins in a temporary
# directory: nothing on the host is attached, swapped on or re-tuned.
#
#   test_ctl.sh RAMZSWAPCTL PLUGIN RAMZSWAP_STAT
#
# Runs every case under each of sh, bash and busybox sh that is installed. Prints
# "ok" or "not ok" per check; exits non-zero if any failed. Needs root (as `up`).
set -u
CTL=$1 PLUGIN=$2 STAT=$3
T=$(mktemp -d /tmp/ramzswapctl-test.XXXXXX) || exit 1
chmod 755 "$T"
cp "$CTL" "$T/ramzswapctl"
chmod 755 "$T/ramzswapctl"
CTL=$T/ramzswapctl
FAILS=0
N=0

cleanup() {
	# Stop any nbdkit a failed case left behind (only ours: its socket is under $T).
	for p in $(server_pids); do kill -KILL "$p" 2>/dev/null; done
	rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

ok() {
	N=$((N + 1))
	if [ "$1" = 0 ]; then
		echo "ok $N - $SHNAME: $2"
	else
		echo "not ok $N - $SHNAME: $2"
		FAILS=$((FAILS + 1))
		[ -z "${OUT-}" ] || printf '  stdout: %s\n' "$OUT"
		[ -z "${ERR-}" ] || printf '  stderr: %s\n' "$ERR"
	fi
}
check() { # description, then a command that must succeed
	d=$1
	shift
	"$@" >/dev/null 2>&1
	ok $? "$d"
}
t() { ok $? "$1"; } # after a condition: cond && cond; t "description"
has() { printf '%s' "$1" | grep -qF -- "$2"; }

# Pids of live processes whose command line names our temporary directory.
server_pids() {
	for f in /proc/[0-9]*/cmdline; do
		{ tr '\000' ' ' <"$f"; } 2>/dev/null | grep -qF "$T/run" || continue
		p=${f#/proc/}
		echo "${p%/cmdline}"
	done
}

# ctl [VAR=value ...] ARGS: runs ramzswapctl with the current shell and those
# variables (never left set here: a shell may keep assignments made before a
# function call); sets OUT, ERR and RC.
ctl() {
	OUT=$(
		while case ${1-} in [A-Z]*=*) true ;; *) false ;; esac; do
			export "${1?}"
			shift
		done
		exec $SH "$CTL" "$@" 2>"$T/err"
	)
	RC=$?
	ERR=$(cat "$T/err")
}

# The stand-ins for the kernel's tools; they act on the fake sysfs and swaps.
make_stubs() {
	mkdir -p "$T/stubs" "$T/failmod"
	cat >"$T/stubs/modprobe" <<'EOF'
#!/bin/sh
echo "modprobe $*" >>"$STUB_LOG"
EOF
	cat >"$T/failmod/modprobe" <<'EOF'
#!/bin/sh
echo "modprobe: FATAL: Module $1 not found in directory /lib/modules/test" >&2
exit 1
EOF
	cat >"$T/stubs/nbd-client" <<'EOF'
#!/bin/sh
echo "nbd-client $*" >>"$STUB_LOG"
if [ "$1" = -d ]; then
	d=$RAMZSWAP_SYSBLOCK/${2#/dev/}
	rm -f "$d/pid"
	echo 0 >"$d/size"
	exit 0
fi
[ -z "${STUB_NBD_FAIL-}" ] || { echo "Negotiation: stub refused" >&2; exit 1; }
[ -S "$2" ] || { echo "no socket $2" >&2; exit 1; }
d=$RAMZSWAP_SYSBLOCK/${3#/dev/}
echo $$ >"$d/pid"
echo 131072 >"$d/size"
EOF
	cat >"$T/stubs/swapon" <<'EOF'
#!/bin/sh
if [ "$1" = --help ]; then
	[ -n "${STUB_SWAPON_NOP-}" ] && echo "Usage: swapon [-a] [-e] [-d[POL]] [DEVICE]" ||
		echo " -p, --priority <prio>  specify the priority of the swap device"
	exit 0
fi
echo "swapon $*" >>"$STUB_LOG"
[ -z "${STUB_SWAPON_FAIL-}" ] || { echo "swapon: stub failure" >&2; exit 1; }
for dev; do :; done
echo "$dev partition 65536 1024 100" >>"$RAMZSWAP_SWAPS"
EOF
	cat >"$T/stubs/swapoff" <<'EOF'
#!/bin/sh
echo "swapoff $*" >>"$STUB_LOG"
[ -z "${STUB_SWAPOFF_FAIL-}" ] || { echo "swapoff: Cannot allocate memory" >&2; exit 1; }
grep -v "^$1 " "$RAMZSWAP_SWAPS" >"$RAMZSWAP_SWAPS.new"
mv "$RAMZSWAP_SWAPS.new" "$RAMZSWAP_SWAPS"
EOF
	chmod 755 "$T"/stubs/* "$T/failmod/modprobe"
}

# A fresh fake kernel: nbd0 and nbd1 free, settings at Debian's defaults.
fake_kernel() {
	rm -rf "$T/sys" "$T/procsys" "$T/run"
	for n in 0 1; do
		mkdir -p "$T/sys/nbd$n"
		echo 0 >"$T/sys/nbd$n/size"
	done
	mkdir -p "$T/procsys/vm"
	echo 3 >"$T/procsys/vm/page-cluster"
	echo 15000 >"$T/procsys/vm/watermark_boost_factor"
	printf 'Filename\tType\tSize\tUsed\tPriority\n' >"$T/swaps"
	: >"$T/log"
}

fake_env() {
	export MODPROBE="$T/stubs/modprobe" SWAPON="$T/stubs/swapon" SWAPOFF="$T/stubs/swapoff"
	export NBD_CLIENT="$T/stubs/nbd-client"
	export RAMZSWAP_SYSBLOCK="$T/sys" RAMZSWAP_PROCSYS="$T/procsys"
	export RAMZSWAP_SWAPS="$T/swaps" STUB_LOG="$T/log"
}

sysctls() { echo "$(cat "$T/procsys/vm/page-cluster") $(cat "$T/procsys/vm/watermark_boost_factor")"; }
rundir_empty() { [ -z "$(ls -A "$T/run" 2>/dev/null)" ]; }
no_server() { [ -z "$(server_pids)" ]; }
# Exited; a zombie counts, as nothing may reap a daemon in a container.
gone() { ! kill -0 "$1" 2>/dev/null || grep -q '^[0-9]* ([^)]*) Z' "/proc/$1/stat"; }
# Whether this process may lower an oom_score_adj (CAP_SYS_RESOURCE).
can_protect() { (echo -1000 >/proc/self/oom_score_adj) 2>/dev/null; }
host_sysctls() { echo "$(cat /proc/sys/vm/page-cluster) $(cat /proc/sys/vm/watermark_boost_factor)"; }

# ---- the cases ----

test_usage() {
	ctl --help
	[ "$RC" = 0 ] && has "$OUT" "Usage: ramzswapctl up"
	t "--help exits 0 with a usage"
	ctl --version
	check "--version" has "$OUT" "ramzswapctl "
	ctl frobnicate
	[ "$RC" != 0 ] && has "$ERR" "unknown command"
	t "an unknown command is refused"
	! grep -q '@[A-Z]*@' "$CTL"
	t "no @VARIABLE@ left unsubstituted"
}

test_refusals() {
	OUT=$(setpriv --reuid=65534 --regid=65534 --clear-groups $SH "$CTL" up 2>&1)
	RC=$? ERR=
	check "up as non-root is refused" [ "$RC" != 0 ]
	check "  saying it must be root" has "$OUT" "ramzswapctl: up must be run as root."
	ctl NBDKIT=/nonexistent up
	[ "$RC" != 0 ] && has "$ERR" "nbdkit (/nonexistent) is not installed."
	t "nbdkit missing"
	ctl NBD_CLIENT=/nonexistent up
	[ "$RC" != 0 ] && has "$ERR" "nbd-client (/nonexistent) is not installed."
	t "nbd-client missing"
	ctl RAMZSWAP_PLUGIN=$T/nope.so up
	[ "$RC" != 0 ] && has "$ERR" "plugin $T/nope.so does not exist"
	t "plugin missing"
	for bad in 12Q abc -5 1.5G 2GiB 50%%; do
		ctl up --size "$bad"
		[ "$RC" != 0 ] && has "$ERR" "is not a size"
		t "--size $bad is not a size"
	done
	ctl up --memlimit 99999999999999999P
	[ "$RC" != 0 ] && has "$ERR" "more than any machine can hold"
	t "an absurd size is refused"
	ctl up --size 1P
	[ "$RC" != 0 ] && has "$ERR" "needs a page table of"
	t "a size whose page table exceeds 25% of RAM"
	ctl up --memlimit 64T
	[ "$RC" != 0 ] && has "$ERR" "--memlimit 64T is more than this machine's"
	t "memlimit over MemTotal"
	ctl up --size 1G --memlimit 2G
	[ "$RC" != 0 ] && has "$ERR" "is larger than --size 1G"
	t "memlimit over size"
	ctl up --reserve 90%
	[ "$RC" != 0 ] && has "$ERR" "--reserve 90% is more than half"
	t "reserve over half of RAM"
	ctl up --priority high
	[ "$RC" != 0 ] && has "$ERR" "priority must be a number"
	t "a bad priority"
	ctl up --bogus
	[ "$RC" != 0 ] && has "$ERR" "unknown argument '--bogus'"
	t "an unknown option"
	n=$(printf '%s\n' "$ERR" | grep -c .)
	check "each refusal is one line" [ "$n" = 1 ]
}

test_config() {
	printf '# comment\n\nsize = 1P  # too big\n' >"$T/conf"
	ctl RAMZSWAP_CONF=$T/conf up
	[ "$RC" != 0 ] && has "$ERR" "--size 1P needs a page table"
	t "config size is used"
	ctl RAMZSWAP_CONF=$T/conf up --size abc
	check "the command line overrides the config" has "$ERR" "--size 'abc' is not a size"
	printf 'size = 1G\nbogus = 1\n' >"$T/conf"
	ctl RAMZSWAP_CONF=$T/conf up
	[ "$RC" != 0 ] && has "$ERR" "line 2: unknown key 'bogus'"
	t "an unknown config key"
	printf 'size = $(touch %s/pwned)\n' "$T" >"$T/conf"
	ctl RAMZSWAP_CONF=$T/conf up
	[ "$RC" != 0 ] && [ ! -e "$T/pwned" ]
	t "the config is data, not code"
	printf 'sysctl = maybe\n' >"$T/conf"
	ctl RAMZSWAP_CONF=$T/conf up
	[ "$RC" != 0 ] && has "$ERR" "sysctl must be on or off"
	t "a bad sysctl setting"
}

# The real modprobe, on a host without the nbd module (this test's CI host).
test_modprobe_real() {
	if [ -e /sys/module/nbd ] || modprobe -n -q nbd 2>/dev/null; then
		N=$((N + 1))
		echo "ok $N - $SHNAME: modprobe nbd failing # SKIP this host has nbd"
		return
	fi
	before=$(host_sysctls)
	ctl up --size 64M
	[ "$RC" != 0 ] && has "$ERR" "ramzswapctl: modprobe nbd failed: "
	t "modprobe nbd failed"
	check "  no nbdkit left" no_server
	check "  no files left in the run directory" rundir_empty
	check "  host sysctls unchanged" [ "$(host_sysctls)" = "$before" ]
}

test_modprobe_zswap() {
	echo Y >"$T/zswap"
	before=$(host_sysctls)
	ctl MODPROBE="$T/failmod/modprobe" RAMZSWAP_ZSWAP_PARAM=$T/zswap up --size 64M
	[ "$RC" != 0 ] && has "$ERR" "modprobe nbd failed: modprobe: FATAL"
	t "a failing modprobe stops up"
	check "zswap on: warned" has "$ERR" "warning: zswap is enabled and compresses pages before they reach ramzswap"
	has "$ERR" "echo N > /sys/module/zswap/parameters/enabled" && has "$ERR" "zswap.enabled=0"
	t "  saying how to turn it off"
	check "  no nbdkit left" no_server
	check "  no files left in the run directory" rundir_empty
	check "  host sysctls unchanged" [ "$(host_sysctls)" = "$before" ]
	ctl MODPROBE="$T/failmod/modprobe" up --size 64M
	! has "$ERR" "zswap is enabled"
	t "zswap off: no warning"
}

test_nothing_up() {
	ctl down
	[ "$RC" = 0 ] && has "$OUT" "no ramzswap device is up"
	t "down with nothing up exits 0"
	ctl down --all
	check "down --all with nothing up exits 0" [ "$RC" = 0 ]
	ctl status
	[ "$RC" = 0 ] && has "$OUT" "no ramzswap device is up"
	t "status with nothing up exits 0"
	ctl stat
	[ "$RC" != 0 ] && has "$ERR" "no ramzswap device is up"
	t "stat with nothing up fails"
	ctl down nbd7
	[ "$RC" != 0 ] && has "$ERR" "nbd7 was not set up by ramzswapctl"
	t "down of a device not ours fails"
	ctl down sda
	[ "$RC" != 0 ] && has "$ERR" "not an nbd device"
	t "down of a non-nbd name fails"
}

test_no_free_device() {
	fake_kernel
	echo 1 >"$T/sys/nbd0/pid"
	echo 1 >"$T/sys/nbd1/size"
	fake_env
	ctl up --size 64M
	[ "$RC" != 0 ] && has "$ERR" "no free /dev/nbdN"
	t "no free /dev/nbdN"
	check "  no nbdkit left" no_server
}

# up, status, stat, a second device, down of one, down of all.
test_cycle() {
	fake_kernel
	fake_env
	# 96M: "100663296" sorts before "1024" as text, so a size compared as a
	# string would print in bytes.
	ctl up --size 128M --memlimit 96M
	check "up succeeds" [ "$RC" = 0 ]
	check "  reports the device" has "$OUT" "/dev/nbd0 is swap (priority 100"
	has "$OUT" "vm.page-cluster=3->0" && has "$OUT" "vm.watermark_boost_factor=15000->0"
	t "  reports the sysctls set"
	check "  serves on the socket" [ -S "$T/run/nbd0.sock" ]
	check "  serves statistics" [ -S "$T/run/nbd0.stats" ]
	pid=$(cat "$T/run/nbd0.pid")
	! gone "$pid"
	t "  nbdkit runs after ramzswapctl exited"
	if can_protect; then
		check "  nbdkit's oom_score_adj is -1000" [ "$(cat "/proc/$pid/oom_score_adj")" = -1000 ]
	else
		check "  oom_score_adj not permitted here: warned" has "$ERR" "cannot set oom_score_adj"
	fi
	check "  nbd-client -unix ... -N swap -b 4096 -swap" grep -qx "nbd-client -unix $T/run/nbd0.sock /dev/nbd0 -N swap -b 4096 -swap" "$T/log"
	! grep -q -- -timeout "$T/log"
	t "  never -timeout"
	check "  swapon -d -p 100" grep -qx "swapon -d -p 100 /dev/nbd0" "$T/log"
	check "  sysctls set" [ "$(sysctls)" = "0 0" ]
	ctl status
	[ "$RC" = 0 ] && has "$OUT" "/dev/nbd0"
	t "status lists the device"
	row=$(printf '%s\n' "$OUT" | grep '^/dev/nbd0')
	check "  with disksize, memlimit and priority" [ "$(echo $row | awk '{ print $2, $7, $9 }')" = "128M 96M 100" ]
	has "$OUT" "vm.page-cluster=0" && has "$OUT" "originals: vm.watermark_boost_factor=15000 vm.page-cluster=3"
	t "  and the sysctls"
	ctl stat --json
	[ "$RC" = 0 ] && has "$OUT" '"disksize": 134217728'
	t "stat --json passes the JSON through"
	ctl stat nbd0
	[ "$RC" = 0 ] && has "$OUT" "Disk size"
	t "stat nbd0 prints the table"

	ctl up --size 32M --priority 5
	[ "$RC" = 0 ] && has "$OUT" "/dev/nbd1 is swap (priority 5"
	t "a second up takes nbd1"
	check "  keeping the saved originals" grep -qx "vm.page-cluster=3" "$T/run/sysctl.saved"
	ctl stat
	[ "$RC" != 0 ] && has "$ERR" "several devices are up"
	t "stat with two devices asks for one"
	pid1=$(cat "$T/run/nbd1.pid")
	ctl down /dev/nbd0
	[ "$RC" = 0 ] && gone "$pid"
	t "down /dev/nbd0"
	grep -qx "swapoff /dev/nbd0" "$T/log" && grep -qx "nbd-client -d /dev/nbd0" "$T/log"
	t "  swapoff, then detach"
	[ ! -e "$T/run/nbd0.sock" ] && [ ! -e "$T/run/nbd0.state" ]
	t "  its files are gone"
	! gone "$pid1" && [ "$(sysctls)" = "0 0" ]
	t "  nbd1 stays up, sysctls kept"
	ctl down
	[ "$RC" = 0 ] && gone "$pid1"
	t "down the rest"
	check "  sysctls restored" [ "$(sysctls)" = "3 15000" ]
	check "  the run directory is empty" rundir_empty
	check "  no nbdkit left" no_server
	check "  no swap left" [ "$(grep -c nbd "$T/swaps")" = 0 ]
}

test_rollback() {
	fake_kernel
	fake_env
	ctl up --size 64M --plugin-args 'bogus=1'
	[ "$RC" != 0 ] && has "$ERR" "nbdkit exited at start-up" && has "$ERR" "bogus"
	t "the plugin's refusal surfaces"
	rundir_empty && no_server
	t "  nothing left"
	ctl STUB_NBD_FAIL=1 up --size 64M
	[ "$RC" != 0 ] && has "$ERR" "nbd-client could not attach /dev/nbd0: Negotiation"
	t "nbd-client failing"
	no_server && rundir_empty
	t "  nbdkit stopped, files removed"
	check "  sysctls untouched" [ "$(sysctls)" = "3 15000" ]
	ctl STUB_SWAPON_FAIL=1 up --size 64M
	[ "$RC" != 0 ] && has "$ERR" "swapon /dev/nbd0 failed"
	t "swapon failing"
	grep -qx "nbd-client -d /dev/nbd0" "$T/log" && [ ! -e "$T/sys/nbd0/pid" ]
	t "  device detached"
	no_server && rundir_empty
	t "  nbdkit stopped, files removed"
	check "  sysctls restored" [ "$(sysctls)" = "3 15000" ]
}

test_swapoff_fails() {
	fake_kernel
	fake_env
	ctl up --size 64M --no-sysctl
	[ "$RC" = 0 ] && [ "$(sysctls)" = "3 15000" ] && [ ! -e "$T/run/sysctl.saved" ]
	t "up --no-sysctl"
	pid=$(cat "$T/run/nbd0.pid")
	ctl STUB_SWAPOFF_FAIL=1 down
	[ "$RC" != 0 ] && has "$ERR" "swapoff /dev/nbd0 failed (swapoff: Cannot allocate memory)"
	t "swapoff failing fails down"
	! gone "$pid" && [ -e "$T/sys/nbd0/pid" ] && [ -e "$T/run/nbd0.state" ]
	t "  the server keeps running, attached"
	ctl down
	[ "$RC" = 0 ] && no_server && rundir_empty
	t "  a later down succeeds"
	ctl STUB_SWAPON_NOP=1 up --size 64M --no-sysctl
	[ "$RC" = 0 ] && has "$ERR" "has no -p" && grep -qx "swapon -d /dev/nbd0" "$T/log"
	t "a swapon without -p: warned, swapon -d"
	ctl down
	[ "$RC" = 0 ] && no_server && rundir_empty
	t "  down"
}

# ---- main ----

[ "$(id -u)" = 0 ] || { echo "1..0 # SKIP needs root"; exit 77; }
REAL_PATH=$PATH
export RAMZSWAP_PLUGIN="$PLUGIN" RAMZSWAP_STAT="$STAT" RAMZSWAP_RUNDIR="$T/run"
export RAMZSWAP_CONF="$T/none.conf" RAMZSWAP_ZSWAP_PARAM="$T/zswap-off"
echo N >"$T/zswap-off"
make_stubs

for SHNAME in sh bash busybox; do
	case $SHNAME in
	busybox) SH="busybox sh" ;;
	*) SH=$SHNAME ;;
	esac
	if ! command -v "$SHNAME" >/dev/null 2>&1; then
		echo "# $SHNAME not installed: skipped"
		continue
	fi
	check "syntax (-n)" $SH -n "$CTL"
	for t in usage refusals config modprobe_real modprobe_zswap nothing_up \
		no_free_device cycle rollback swapoff_fails; do
		(PATH=$REAL_PATH && "test_$t") >"$T/out.$t" 2>&1
		cat "$T/out.$t"
		FAILS=$((FAILS + $(grep -c '^not ok' "$T/out.$t")))
		N=$((N + $(grep -c '^\(not \)\{0,1\}ok' "$T/out.$t")))
	done
done

SHNAME=lint
if command -v shellcheck >/dev/null 2>&1; then
	OUT=$(shellcheck -s sh "$CTL" 2>&1)
	ok $? "shellcheck"
else
	echo "# shellcheck not installed: skipped"
fi
if command -v checkbashisms >/dev/null 2>&1; then
	OUT=$(checkbashisms "$CTL" 2>&1)
	ok $? "checkbashisms"
else
	echo "# checkbashisms not installed: skipped"
fi
echo "1..$N"
[ "$FAILS" = 0 ] || { echo "# $FAILS failed"; exit 1; }
