#!/bin/bash
# Boot one kernel under qemu (TCG), let the guest measure, and bring the results back.
#
#   lab/boot.sh DATA_DIR RELEASE
#
# Uses DATA/kernels/RELEASE/vmlinuz, DATA/build/initrd-RELEASE.cpio, DATA/root.img; makes
# a fresh ext4 output disk DATA/out-RELEASE.img, reads it back with debugfs (no mounting)
# into DATA/results/RELEASE/ (replacing an earlier result), with the serial console in
# console.log. One qemu at a time: a lock file enforces it.
set -euo pipefail
DATA=$1 REL=$2
KDIR=$DATA/kernels/$REL
INITRD=$DATA/build/initrd-$REL.cpio
ROOT=$DATA/root.img
OUTIMG=$DATA/out-$REL.img
RESULTS=${GUEST_RESULTS:-$DATA/results}
RES=$RESULTS/$REL
CASES=${GUEST_CASES:-/lab/cases.tsv}   # inside the image
TIMEOUT=${GUEST_TIMEOUT:-2400}   # seconds, the whole guest
SMP=${GUEST_SMP:-1}
JOBS=${GUEST_JOBS:-$SMP}
ACCEL=${GUEST_ACCEL:-tcg}        # /dev/kvm exists here but a guest hangs in firmware under it
ARCH=$(cat "$KDIR/arch")
case "$ARCH" in
  amd64) QEMU=qemu-system-x86_64 CPU=max,la57=off ;;
  i386) QEMU=qemu-system-i386 CPU=max ;;
  *) echo "boot: unknown arch $ARCH" >&2; exit 1 ;;
esac

rm -f "$OUTIMG"
mke2fs -q -F -t ext4 -L labout -N 200000 "$OUTIMG" 1024M
mkdir -p "$RESULTS"
TMPRES=$RESULTS/.$REL.new
rm -rf "$TMPRES"; mkdir -p "$TMPRES"

exec 9> "$DATA/qemu.lock"
flock 9
echo "== boot $REL ($ARCH, $QEMU -accel $ACCEL -smp $SMP, jobs $JOBS, timeout ${TIMEOUT}s)"
start=$(date +%s)
set +e
timeout -k 20 "$TIMEOUT" "$QEMU" -accel "$ACCEL" -cpu "$CPU" -m 2G -smp "$SMP" \
  -nographic -no-reboot \
  -kernel "$KDIR/vmlinuz" -initrd "$INITRD" \
  -append "console=ttyS0 panic=-1 quiet lab.jobs=$JOBS lab.cases=$CASES" \
  -drive "file=$ROOT,format=raw,if=virtio,readonly=on" \
  -drive "file=$OUTIMG,format=raw,if=virtio" \
  < /dev/null > "$TMPRES/console.log" 2>&1
qrc=$?
set -e
flock -u 9
secs=$(( $(date +%s) - start ))
echo "   qemu exited with $qrc after ${secs}s"
[ $qrc = 124 ] && echo "   TIMEOUT: the guest was killed after ${TIMEOUT}s" | tee -a "$TMPRES/console.log"

# Read the output disk back without mounting it.
debugfs -R "rdump / $TMPRES" "$OUTIMG" > "$TMPRES/debugfs.log" 2>&1 || true
# rdump / writes the root's entries directly into the target directory
rm -rf "$TMPRES/lost+found"
printf '%s\n' "$qrc" > "$TMPRES/qemu-exit"
printf '%s\n' "$secs" > "$TMPRES/seconds"
rm -rf "$RES"
mv "$TMPRES" "$RES"
rm -f "$OUTIMG"
if [ ! -e "$RES/done" ]; then
  echo "   the guest did not finish: see $RES/console.log" >&2
  tail -20 "$RES/console.log" >&2
  exit 1
fi
echo "   results in $RES ($(($(wc -l < "$RES/index.tsv") - 1)) index rows)"
