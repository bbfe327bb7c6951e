#!/bin/sh
# QEMU end-to-end swap test of ramzswap (see tests/e2e/README.md).
#
# Builds a guest from Debian packages (kernel + nbd.ko, busybox-static, nbd-client,
# nbdkit, the plugin and every library they load), boots it in QEMU without any
# network device, and lets /init swap through the kernel's NBD client to nbdkit
# serving the plugin inside the guest on a unix socket while a workload fills more
# memory than it may keep and checks every page it gets back.
#
# Exit status: 0 when every run printed PASS, 1 on any FAIL, hang or setup error,
# 77 (skip) when QEMU, a tool or the kernel is unavailable, unless CI or
# RAMZSWAP_E2E_REQUIRE=1 is set: then a missing piece is a failure.
set -eu

usage() {
	cat <<'EOF'
usage: run-e2e.sh [options]
  --plugin PATH|memory   plugin to serve: a ramzswap .so, or nbdkit's memory plugin
                         as a stand-in (default: memory)
  --swap zram            swap to the kernel's own zram instead (the in-kernel anchor:
                         zram.ko and zsmalloc.ko from the same kernel package, with
                         --disksize and --memlimit as its disksize and mem_limit)
  --ctl PATH             bring ramzswap up and down with this ramzswapctl (the
                         ramzswap plugin only; global and nofit use it when given)
  --stat PATH            ramzswap-stat for the guest (used by ramzswapctl status)
  --plugin-args 'K=V ..' extra plugin parameters (e.g. 'allocator=zstd')
  --filter NAME          also load nbdkit filter NAME (repeatable; parameters go
                         in --plugin-args), e.g. error to show that I/O errors fail
  --sysctl KEY=VALUE     set a guest sysctl before swapon (repeatable), e.g.
                         vm.watermark_scale_factor=200
  --scenario cgroup|global|nofit
                         cgroup: workload in a memory cgroup, the server has room;
                         global: pressure on the whole guest, a workload that fits
                         (passes when every page reads back); nofit: more
                         incompressible data than RAM and memlimit hold (passes
                         when the OOM killer ends the workload, the guest goes on
                         and swap comes down cleanly)
  --workdir DIR          where the kernel .deb is cached and the guest is built
                         (default: ./e2e-work)
  --runs N               boot N times and report the pass rate (default: 1)
  --majority             pass when most of the --runs pass, and stop booting as soon
                         as the outcome is decided (a gate for a scenario that can
                         only pass at a rate)
  --accel kvm|tcg        default: kvm if it really works here, else tcg
  --mem SIZE             guest RAM (default: 512M for cgroup, 256M for global)
  --workload-mib N|P%    workload size in MiB, or P% of MemAvailable once swap is
                         up (default: 160 for cgroup, 130% for global, 300 for
                         nofit)
  --cgroup-max SIZE      memory.max of the workload's cgroup (default: 32M)
  --disksize SIZE        swap device size (default: 512M)
  --memlimit SIZE        ramzswap's memlimit= ('' for the plugin's default;
                         default: 192M for cgroup, so the server has room;
                         96M for global and nofit)
  --deadline SECONDS     guest watchdog deadline (default: 240; host adds 60)
  --verbose              copy the guest console to stdout while it runs
EOF
}

SRCDIR=$(cd "$(dirname "$0")" && pwd)
PLUGIN=memory
PLUGIN_ARGS=""
SWAP=nbd
CTL=""
STAT=""
FILTERS=""
SYSCTLS=""
SCENARIO=cgroup
WORKDIR=$PWD/e2e-work
RUNS=1
MAJORITY=no
ACCEL=""
MEM=""
WORKLOAD_MIB=""
CGROUP_MAX=32M
DISKSIZE=512M
DEADLINE=240
VERBOSE=no

while [ $# -gt 0 ]; do
	case "$1" in
	--plugin) PLUGIN=$2; shift 2 ;;
	--plugin-args) PLUGIN_ARGS=$2; shift 2 ;;
	--swap) SWAP=$2; shift 2 ;;
	--ctl) CTL=$2; shift 2 ;;
	--stat) STAT=$2; shift 2 ;;
	--filter) FILTERS="$FILTERS $2"; shift 2 ;;
	--sysctl) SYSCTLS="$SYSCTLS $2"; shift 2 ;;
	--scenario) SCENARIO=$2; shift 2 ;;
	--workdir) WORKDIR=$2; shift 2 ;;
	--runs) RUNS=$2; shift 2 ;;
	--majority) MAJORITY=yes; shift ;;
	--accel) ACCEL=$2; shift 2 ;;
	--mem) MEM=$2; shift 2 ;;
	--workload-mib) WORKLOAD_MIB=$2; shift 2 ;;
	--cgroup-max) CGROUP_MAX=$2; shift 2 ;;
	--disksize) DISKSIZE=$2; shift 2 ;;
	--memlimit) MEMLIMIT=$2; shift 2 ;;
	--deadline) DEADLINE=$2; shift 2 ;;
	--verbose) VERBOSE=yes; shift ;;
	-h | --help) usage; exit 0 ;;
	*) usage >&2; exit 1 ;;
	esac
done
case "$SCENARIO" in
cgroup) : "${WORKLOAD_MIB:=160}" "${MEM:=512M}" "${MEMLIMIT=192M}" ;;
global) : "${WORKLOAD_MIB:=130%}" "${MEM:=256M}" "${MEMLIMIT=96M}" ;;
nofit) : "${WORKLOAD_MIB:=300}" "${MEM:=256M}" "${MEMLIMIT=96M}" ;;
*) echo "run-e2e: unknown scenario '$SCENARIO'" >&2; exit 1 ;;
esac
abspath() {
	[ -f "$1" ] || { echo "run-e2e: $1 not found" >&2; exit 1; }
	echo "$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
}
[ -z "$CTL" ] || CTL=$(abspath "$CTL")
[ -z "$STAT" ] || STAT=$(abspath "$STAT")
case "$SWAP" in
nbd | zram) ;;
*) echo "run-e2e: --swap must be zram (or leave it out for an NBD server)" >&2; exit 1 ;;
esac

log() { echo "run-e2e: $*"; }

# A missing prerequisite skips the test on a developer's machine, fails it in CI.
skip() {
	if [ -n "${CI:-}" ] || [ "${RAMZSWAP_E2E_REQUIRE:-0}" = 1 ]; then
		log "FAIL (prerequisite missing in CI): $*" >&2
		exit 1
	fi
	log "SKIP: $*" >&2
	exit 77
}

for tool in qemu-system-x86_64 nbdkit nbd-client busybox cpio gzip gcc depmod dpkg \
	apt-get apt-cache timeout ldd; do
	command -v "$tool" >/dev/null 2>&1 ||
		skip "$tool not found (scripts/install-deps.sh installs everything)"
done
[ -x /usr/sbin/nbd-client ] || skip "nbd-client is not /usr/sbin/nbd-client"
BUSYBOX=$(command -v busybox)
if ldd "$BUSYBOX" >/dev/null 2>&1; then
	skip "$BUSYBOX is not static (install busybox-static)"
fi

NBDKIT=$(command -v nbdkit)
PLUGINDIR=$(nbdkit --dump-config | sed -n 's/^plugindir=//p')
case "$PLUGIN" in
memory)
	PLUGIN_SO=$PLUGINDIR/nbdkit-memory-plugin.so
	PLUGIN_CMD="memory size=$DISKSIZE"
	MKSWAP=yes
	STATS=""
	;;
*)
	[ -f "$PLUGIN" ] || { log "FAIL: plugin $PLUGIN not found" >&2; exit 1; }
	PLUGIN_SO=$(cd "$(dirname "$PLUGIN")" && pwd)/$(basename "$PLUGIN")
	# ramzswap's slot 0 reads as a swap header: no mkswap. Pass memlimit= and
	# stats= only if this build of the plugin knows them (see --help).
	PLUGIN_CMD="$PLUGIN_SO disksize=$DISKSIZE"
	MKSWAP=no
	STATS=""
	plugin_help=$(nbdkit "$PLUGIN_SO" --help 2>/dev/null || true)
	if [ -n "$MEMLIMIT" ] && echo "$plugin_help" | grep -q '^memlimit='; then
		PLUGIN_CMD="$PLUGIN_CMD memlimit=$MEMLIMIT"
	fi
	if echo "$plugin_help" | grep -q '^stats='; then
		STATS=/run/ramzswap.stats
		PLUGIN_CMD="$PLUGIN_CMD stats=$STATS"
	fi
	;;
esac
if [ -n "$PLUGIN_ARGS" ]; then
	PLUGIN_CMD="$PLUGIN_CMD $PLUGIN_ARGS"
fi
FILTER_SOS=""
for f in $FILTERS; do
	so=$(nbdkit --dump-config | sed -n 's/^filterdir=//p')/nbdkit-$f-filter.so
	[ -f "$so" ] || skip "nbdkit filter $f not found ($so)"
	FILTER_SOS="$FILTER_SOS $so"
	PLUGIN_CMD="--filter=$so $PLUGIN_CMD"
done
[ -f "$PLUGIN_SO" ] || skip "$PLUGIN_SO not found"

mkdir -p "$WORKDIR"
WORKDIR=$(cd "$WORKDIR" && pwd)
T0=$(date +%s)

# --- kernel: the package linux-image-amd64 depends on, cached in the workdir ---
kernel_package() {
	apt-cache depends linux-image-amd64 2>/dev/null |
		sed -n 's/^ *Depends: \(linux-image-[0-9].*\)$/\1/p' | head -n 1
}
fetch_kernel() {
	mkdir -p "$WORKDIR/debs"
	KPKG=$(kernel_package)
	if [ -z "$KPKG" ]; then
		log "no apt lists for linux-image-amd64: running apt-get update"
		apt-get update -q >/dev/null 2>&1 || true
		KPKG=$(kernel_package)
	fi
	if [ -z "$KPKG" ]; then
		# Offline: fall back to a kernel downloaded before, if any.
		KDEB=$(ls "$WORKDIR"/debs/linux-image-*.deb 2>/dev/null | tail -n 1)
		[ -n "$KDEB" ] || skip "cannot resolve linux-image-amd64 (no apt lists)"
		return
	fi
	KDEB=$(ls "$WORKDIR/debs/${KPKG}_"*.deb 2>/dev/null | tail -n 1)
	[ -n "$KDEB" ] && return
	log "downloading $KPKG"
	if ! (cd "$WORKDIR/debs" && apt-get download -q "$KPKG" >/dev/null 2>&1); then
		log "apt-get download failed: running apt-get update and retrying"
		apt-get update -q >/dev/null 2>&1 || true
		(cd "$WORKDIR/debs" && apt-get download -q "$KPKG" >/dev/null) ||
			skip "cannot download $KPKG"
	fi
	KDEB=$(ls "$WORKDIR/debs/${KPKG}_"*.deb | tail -n 1)
}
fetch_kernel
KDIR=$WORKDIR/kernel/$(basename "$KDEB" .deb)
if [ ! -f "$KDIR/.done" ]; then
	log "extracting $(basename "$KDEB")"
	rm -rf "$KDIR"
	mkdir -p "$KDIR"
	dpkg -x "$KDEB" "$KDIR"
	KVER=$(ls "$KDIR/lib/modules")
	depmod -b "$KDIR" "$KVER"
	touch "$KDIR/.done"
fi
KVER=$(ls "$KDIR/lib/modules")
VMLINUZ=$KDIR/boot/vmlinuz-$KVER
NBD_KO=$(cd "$KDIR" && find "lib/modules/$KVER" -name 'nbd.ko*' | head -n 1)
if [ ! -f "$VMLINUZ" ] || [ -z "$NBD_KO" ]; then
	log "FAIL: no vmlinuz or nbd.ko in $KDEB" >&2
	exit 1
fi

# --- guest programs, static ---
mkdir -p "$WORKDIR/bin"
for prog in workload watchdog sockcat; do
	gcc -static -O2 -std=gnu11 -Wall -Wextra -o "$WORKDIR/bin/$prog" "$SRCDIR/$prog.c" ||
		{ log "FAIL: cannot build $prog.c statically (libc6-dev?)" >&2; exit 1; }
done

# --- initramfs: merged-/usr like the host, every binary at its host path ---
ROOT=$WORKDIR/root
rm -rf "$ROOT"
mkdir -p "$ROOT/usr/bin" "$ROOT/usr/sbin" "$ROOT/usr/lib" "$ROOT/e2e"
for d in bin sbin lib lib64; do
	if [ -L "/$d" ]; then
		ln -s "$(readlink "/$d")" "$ROOT/$d"
	else
		mkdir -p "$ROOT/$d"
	fi
done
mkdir -p "$ROOT/usr/lib64" "$ROOT/proc" "$ROOT/sys" "$ROOT/dev" "$ROOT/run" "$ROOT/tmp" \
	"$ROOT/etc"
# The kernel opens /dev/console for /init before devtmpfs is mounted.
mknod -m 600 "$ROOT/dev/console" c 5 1 2>/dev/null || true
cp "$BUSYBOX" "$ROOT/usr/bin/busybox"
"$BUSYBOX" --list-full | while read -r applet; do
	[ -e "$ROOT/$applet" ] || [ -L "$ROOT/$applet" ] || ln -s /usr/bin/busybox "$ROOT/$applet"
done

# Copy a file and every library ldd lists, each at its host path.
copy_with_libs() {
	for f in "$1" $(ldd "$1" 2>/dev/null | awk '/=> \// { print $3 } /^\t\// { print $1 }'); do
		mkdir -p "$ROOT$(dirname "$f")"
		rm -f "$ROOT$f"
		cp -L "$f" "$ROOT$f"
	done
}
copy_with_libs "$NBDKIT"
copy_with_libs /usr/sbin/nbd-client
# util-linux's swapon and swapoff, as a real machine has them (busybox's lack -p).
copy_with_libs "$(command -v swapon)"
copy_with_libs "$(command -v swapoff)"
copy_with_libs "$PLUGIN_SO"
for so in $FILTER_SOS; do
	copy_with_libs "$so"
done

# A module and every module modules.dep says it needs, at their paths.
copy_module() {
	ko=$(cd "$KDIR" && find "lib/modules/$KVER" -name "$1.ko*" | head -n 1)
	[ -n "$ko" ] || { log "FAIL: no $1.ko in $KDEB" >&2; exit 1; }
	deps=$(sed -n "s|^${ko#lib/modules/$KVER/}:||p" "$KDIR/lib/modules/$KVER/modules.dep")
	for m in "$ko" $(for d in $deps; do echo "lib/modules/$KVER/$d"; done); do
		mkdir -p "$ROOT/$(dirname "$m")"
		cp "$KDIR/$m" "$ROOT/$m"
	done
}
copy_module nbd
[ "$SWAP" = zram ] && copy_module zram
if [ -n "$CTL" ]; then
	cp "$CTL" "$ROOT/usr/sbin/ramzswapctl"
	chmod 755 "$ROOT/usr/sbin/ramzswapctl"
	[ -z "$STAT" ] || copy_with_libs "$STAT"
fi
for f in modules.dep modules.dep.bin modules.builtin modules.builtin.bin modules.order; do
	cp "$KDIR/lib/modules/$KVER/$f" "$ROOT/lib/modules/$KVER/"
done
cp "$WORKDIR/bin/workload" "$WORKDIR/bin/watchdog" "$WORKDIR/bin/sockcat" "$ROOT/e2e/"
cp "$SRCDIR/init.sh" "$ROOT/init"
chmod 755 "$ROOT/init"
CTL_ARGS="--size $DISKSIZE${MEMLIMIT:+ --memlimit $MEMLIMIT}${PLUGIN_ARGS:+ --plugin-args \"$PLUGIN_ARGS\"}"
cat >"$ROOT/e2e/config" <<EOF
SCENARIO='$SCENARIO'
SWAP='$SWAP'
CTL='$([ -n "$CTL" ] && echo /usr/sbin/ramzswapctl)'
CTL_ENV='RAMZSWAP_PLUGIN=$PLUGIN_SO${STAT:+ RAMZSWAP_STAT=$STAT} SWAPON=/usr/sbin/swapon SWAPOFF=/usr/sbin/swapoff'
CTL_ARGS='$CTL_ARGS'
DISKSIZE='$DISKSIZE'
MEMLIMIT='$MEMLIMIT'
PLUGIN_CMD='$PLUGIN_CMD'
MKSWAP='$MKSWAP'
STATS='$STATS'
WORKLOAD_MIB='$WORKLOAD_MIB'
CGROUP_MAX='$CGROUP_MAX'
DEADLINE='$DEADLINE'
SYSCTLS='$SYSCTLS'
EOF
INITRD=$WORKDIR/initrd.gz
(cd "$ROOT" && find . | cpio -o -H newc -R 0:0 --quiet) | gzip -1 >"$INITRD"
log "guest: kernel $KVER, initramfs $(($(stat -c %s "$INITRD") / 1024)) KiB, built in" \
	"$(($(date +%s) - T0)) s"

# --- accelerator: KVM only if it really boots a kernel here ---
kvm_works() {
	[ -r /dev/kvm ] && [ -w /dev/kvm ] || return 1
	grep -qE '^flags.*\b(vmx|svm)\b' /proc/cpuinfo || return 1
	# No initrd: the kernel panics at once; panic=-1 + -no-reboot ends QEMU.
	timeout 30 qemu-system-x86_64 -nodefaults -no-user-config -nic none -display none \
		-monitor none -serial stdio -no-reboot -accel kvm -cpu host -m 256M \
		-kernel "$VMLINUZ" -append "console=ttyS0 panic=-1" </dev/null 2>&1 |
		grep -q 'Kernel panic'
}
if [ -z "$ACCEL" ]; then
	if kvm_works; then ACCEL=kvm; else ACCEL=tcg; fi
fi
case "$ACCEL" in
kvm) CPU=host ;;
tcg) CPU=max ;;
*) log "FAIL: --accel must be kvm or tcg" >&2; exit 1 ;;
esac

# --- boot ---
# Any root= makes the kernel unpack the initramfs into ramfs instead of tmpfs:
# ramfs pages cannot be swapped, so nbdkit's own code and libraries never end up on
# the swap device they serve (with tmpfs, reclaim swaps them out to /dev/nbd0).
ROOTFS_RAMFS="root=/dev/ram0"
run_once() {
	console=$WORKDIR/console-$1.log
	t=$(date +%s)
	set +e
	timeout --kill-after=10 $((DEADLINE + 60)) qemu-system-x86_64 \
		-nodefaults -no-user-config -nic none -display none -monitor none \
		-serial stdio -no-reboot -accel "$ACCEL" -cpu "$CPU" -smp 1 -m "$MEM" \
		-kernel "$VMLINUZ" -initrd "$INITRD" \
		-append "console=ttyS0 quiet panic=-1 zswap.enabled=0 transparent_hugepage=never $ROOTFS_RAMFS" \
		</dev/null >"$console" 2>&1 &
	qemu=$!
	if [ "$VERBOSE" = yes ]; then
		tail -f "$console" --pid=$qemu &
	fi
	wait $qemu
	status=$?
	set -e
	tr -d '\r' <"$console" | grep -E '^(e2e|workload|e2e-stats|e2e-status):' || true
	result=$(tr -d '\r' <"$console" | grep -m 1 '^E2E-RESULT: ' || true)
	if [ -z "$result" ]; then
		[ "$status" = 124 ] && result="E2E-RESULT: FAIL host timeout after $((DEADLINE + 60)) s"
		[ -n "$result" ] || result="E2E-RESULT: FAIL no result line (QEMU exit status $status)"
	fi
	log "run $1/$RUNS ($ACCEL): ${result#E2E-RESULT: } (QEMU wall $(($(date +%s) - t)) s)"
	case "$result" in
	"E2E-RESULT: PASS"*) return 0 ;;
	esac
	log "console tail ($console):"
	tr -d '\r' <"$console" | tail -n 80 | sed 's/^/  | /'
	return 1
}

passed=0
failed=0
i=1
while [ "$i" -le "$RUNS" ]; do
	if run_once "$i"; then passed=$((passed + 1)); else failed=$((failed + 1)); fi
	i=$((i + 1))
	if [ "$MAJORITY" = yes ] &&
		{ [ $((passed * 2)) -gt "$RUNS" ] || [ $((failed * 2)) -ge "$RUNS" ]; }; then
		break
	fi
done
if [ "$SWAP" = zram ]; then
	log "scenario $SCENARIO, swap: zram disksize=$DISKSIZE mem_limit=${MEMLIMIT:-0}$SYSCTLS"
elif [ -n "$CTL" ]; then
	log "scenario $SCENARIO, swap: ramzswapctl up $CTL_ARGS$SYSCTLS"
else
	log "scenario $SCENARIO, swap: nbdkit $PLUGIN_CMD$SYSCTLS"
fi
log "pass rate $passed/$((passed + failed)), total wall $(($(date +%s) - T0)) s"
if [ "$MAJORITY" = yes ]; then
	[ $((passed * 2)) -gt "$RUNS" ]
else
	[ "$passed" = "$RUNS" ]
fi
