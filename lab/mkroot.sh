#!/bin/bash
# Build the guests' root disk: an ext4 image made with `mke2fs -t ext4 -d` (no mounting)
# from a staging directory holding this host's programs and libraries, the test programs
# (at their host path /work/main/testdata/build, so $ORIGIN rpaths and the paths in maps
# are the host's), a snapshot of the elfmap binary and the lab's static programs.
#
#   lab/mkroot.sh DATA_DIR BUILD_DIR ELFMAP
#
# Writes DATA_DIR/root.img and DATA_DIR/cases.tsv (BITS<TAB>PATH, also at /lab/cases.tsv
# in the image).
set -euo pipefail
DATA=$1 BUILD=$2 ELFMAP=$3
LAB=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$LAB/.." && pwd)
TESTDATA=$REPO/testdata/build
STAGE=$DATA/root-staging
IMG=$DATA/root.img

rm -rf "$STAGE"
mkdir -p "$STAGE"/{usr,etc,lab/bin,out,proc,sys,dev,tmp,root,run,var/tmp}
chmod 1777 "$STAGE/tmp" "$STAGE/var/tmp"

# / symlinks as on the host (bin -> usr/bin, lib -> usr/lib, lib64, lib32, sbin, ...)
for l in bin sbin lib lib32 lib64 libx32; do
  if [ -L "/$l" ]; then cp -a "/$l" "$STAGE/$l"; elif [ -d "/$l" ]; then cp -a "/$l" "$STAGE/$l"; fi
done
# /usr: programs and libraries; /usr/share is not needed (the programs stop before main).
cp -a /usr/bin /usr/sbin "$STAGE/usr/"
for d in /usr/libexec /usr/lib32 /usr/lib64 /usr/libx32; do
  [ -e "$d" ] && cp -a "$d" "$STAGE/usr/"
done
mkdir -p "$STAGE/usr/lib"
# Everything in /usr/lib but large trees no measured program needs before main.
EXCLUDE=" google-cloud-sdk jvm python3 python3.11 gcc debug postgresql "
for e in /usr/lib/*; do
  b=$(basename "$e")
  [[ "$EXCLUDE" == *" $b "* ]] && continue
  cp -a "$e" "$STAGE/usr/lib/"
done
# /usr/local: the empty skeleton (ld.so.conf names /usr/local/lib)
(cd /usr/local && find . -maxdepth 2 -type d) | while read -r d; do mkdir -p "$STAGE/usr/local/$d"; done
# /etc: only what the loader and the programs' start-up read (no credentials)
for f in ld.so.cache ld.so.conf ld.so.conf.d ld.so.preload alternatives passwd group \
         nsswitch.conf host.conf gai.conf localtime timezone os-release debian_version \
         selinux ssl/openssl.cnf; do
  [ -e "/etc/$f" ] || [ -L "/etc/$f" ] || continue
  mkdir -p "$STAGE/etc/$(dirname "$f")"
  cp -a "/etc/$f" "$STAGE/etc/$f"
done
# os-release is a symlink into /usr/lib: present already.

# the test programs, at their host path
mkdir -p "$STAGE$(dirname "$TESTDATA")"
cp -a "$TESTDATA" "$STAGE$TESTDATA"
# elfmap (a static x86_64 binary: a snapshot of the current build) and the lab's programs
cp "$ELFMAP" "$STAGE/lab/bin/elfmap"
cp "$BUILD"/recorder64 "$BUILD"/recorder32 "$BUILD"/driver64 "$BUILD"/driver32 "$STAGE/lab/bin/"
"$ELFMAP" --version > "$STAGE/lab/elfmap-version" 2>&1 || true
sha256sum "$ELFMAP" | cut -d' ' -f1 >> "$STAGE/lab/elfmap-version"

# ---- the cases: every executable of testdata/build, then the system programs ----------
elf_bits() {  # 64, 32, or nothing (not ELF); x32 (ELFCLASS32 with EM_X86_64) is left out
  local f=$1 magic cls mach
  magic=$(head -c4 "$f" 2>/dev/null | od -An -tx1 | tr -d ' \n')
  [ "$magic" = 7f454c46 ] || return 0
  cls=$(od -An -tu1 -j4 -N1 "$f" | tr -d ' ')
  mach=$(od -An -tu2 -j18 -N2 "$f" | tr -d ' ')
  if [ "$cls" = 2 ]; then echo 64; elif [ "$cls" = 1 ] && [ "$mach" = 3 ]; then echo 32; fi
}
is_exec() {  # ET_EXEC, or ET_DYN that is not a plain shared library (has PT_INTERP or is static-pie)
  local t; t=$(od -An -tu2 -j16 -N2 "$1" | tr -d ' ')
  [ "$t" = 2 ] && return 0
  [ "$t" = 3 ] || return 1
  [[ "$1" != *.so && "$1" != *.so.* ]]
}
CASES=$DATA/cases.tsv
: > "$CASES.new"
skipped=()
while IFS= read -r f; do
  bits=$(elf_bits "$f"); [ -n "$bits" ] || continue
  is_exec "$f" || continue
  printf '%s\t%s\n' "$bits" "$f" >> "$CASES.new"
done < <(find "$TESTDATA" -path "$TESTDATA/tmp" -prune -o -type f -perm -u+x -print | sort)
ntest=$(wc -l < "$CASES.new")
declare -A seen=()
for name in $(grep -v '^#' "$LAB/system-programs.txt"); do
  if [[ "$name" == /* ]]; then p=$name; else
    p=""; for d in /usr/bin /usr/sbin; do [ -x "$d/$name" ] && { p=$d/$name; break; }; done
  fi
  if [ -z "$p" ] || [ ! -e "$p" ]; then skipped+=("$name (missing)"); continue; fi
  [ -n "${seen[$p]:-}" ] && continue; seen[$p]=1
  [ -e "$STAGE$p" ] || { skipped+=("$name (not in the image)"); continue; }
  real=$(readlink -f "$p")
  [ -e "$STAGE$real" ] || { skipped+=("$name (its target $real is not in the image)"); continue; }
  if [ -u "$real" ] || [ -g "$real" ]; then skipped+=("$name (set-ID)"); continue; fi
  bits=$(elf_bits "$real")
  [ -n "$bits" ] || { skipped+=("$name (not an i386/x86_64 ELF file)"); continue; }
  printf '%s\t%s\n' "$bits" "$p" >> "$CASES.new"
done
mv "$CASES.new" "$CASES"
cp "$CASES" "$STAGE/lab/cases.tsv"
# a few programs for `make smoke`
grep -E '/(hello64pie|hello32|static64|ls|gdb|python3)$' "$CASES" > "$STAGE/lab/cases-smoke.tsv"
echo "mkroot: $(wc -l < "$CASES") programs ($ntest from testdata, $(($(wc -l < "$CASES") - ntest)) system programs; $(grep -c '^32' "$CASES") 32-bit)"
[ ${#skipped[@]} = 0 ] || printf 'mkroot: left out: %s\n' "${skipped[@]}"

# ---- the image: ext4, sized to the staging tree plus room -----------------------------
kb=$(du -sk "$STAGE" | cut -f1)
size_mb=$(( kb / 1024 * 5 / 4 + 256 ))
rm -f "$IMG"
mke2fs -q -F -t ext4 -L labroot -d "$STAGE" "$IMG" "${size_mb}M"
echo "mkroot: $IMG (${size_mb} MiB, from $STAGE)"
