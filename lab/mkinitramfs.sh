#!/bin/bash
# Build the initramfs of one kernel: /init (the lab's static init, 64- or 32-bit as the
# kernel) and the modules needed to mount an ext4 disk on virtio-blk, uncompressed, with
# their load order (modules.dep and modules.softdep order, as modprobe --show-depends
# prints it; built-in ones are left out).
#
#   lab/mkinitramfs.sh KERNEL_DIR INIT OUT.cpio
# KERNEL_DIR is DATA/kernels/<release> (lib/modules/<release>/ with a modules.dep).
set -euo pipefail
KDIR=$(cd "$1" && pwd) INIT=$2 OUT=$3
REL=$(basename "$KDIR")
MODULES=(ext4 virtio_blk virtio_pci crc32c)
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
mkdir -p "$TMP/modules" "$TMP/dev" "$TMP/proc" "$TMP/sys" "$TMP/root"
cp "$INIT" "$TMP/init"
chmod 755 "$TMP/init"
n=0
declare -A done=()
while read -r verb path _; do
  [ "$verb" = insmod ] || continue
  [ -n "${done[$path]:-}" ] && continue
  done[$path]=1
  n=$((n + 1))
  base=$(basename "$path")
  name=$(printf '%02d-%s' "$n" "${base%%.ko*}.ko")
  case "$path" in
    *.ko.xz) xz -dc "$path" > "$TMP/modules/$name" ;;
    *.ko.zst) zstd -qdc "$path" > "$TMP/modules/$name" ;;
    *.ko.gz) gzip -dc "$path" > "$TMP/modules/$name" ;;
    *.ko) cp "$path" "$TMP/modules/$name" ;;
    *) echo "mkinitramfs: unknown module file $path" >&2; exit 1 ;;
  esac
  echo "$name" >> "$TMP/modules/order"
done < <(modprobe -d "$KDIR" -S "$REL" --show-depends -a "${MODULES[@]}")
[ -s "$TMP/modules/order" ] || { echo "mkinitramfs: no module to load for $REL?" >&2; }
(cd "$TMP" && find . | sort | cpio -o -H newc --quiet -R 0:0) > "$OUT"
echo "mkinitramfs: $OUT: $(tr '\n' ' ' < "$TMP/modules/order")"
