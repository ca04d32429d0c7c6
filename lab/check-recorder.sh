#!/bin/bash
# Check the recorder against `elfmap run` on this machine: the same maps at every stage,
# both layouts (and --3gb for 32-bit programs).
#   lab/check-recorder.sh ELFMAP RECORDER64 RECORDER32 SCRATCH_DIR
# Exit 0 when every pair is identical.
set -u
ELFMAP=$1 R64=$2 R32=$3 OUT=$4
T=$(cd "$(dirname "$0")/.." && pwd)/testdata/build
rm -rf "$OUT"; mkdir -p "$OUT"
progs=(
  "$T/hello64pie"         # 64-bit PIE
  "$T/hello32"            # 32-bit non-PIE
  "$T/hello32pie"
  "$T/static64" "$T/staticpie64" "$T/static32"   # static
  "$T/main_all" "$T/m32/main_all32"
  /usr/bin/ls /usr/bin/gdb
)
for p in "$T"/musl/*; do   # musl programs, if built
  [ -f "$p" ] && [ -x "$p" ] && [[ "$p" != *.so ]] && progs+=("$p")
done
# One fixed environment for both tools (each passes its own environment on).
ENV=(env -i PATH=/usr/bin:/bin:/usr/sbin:/sbin HOME=/ LC_ALL=C)
same=0 differ=0
for p in "${progs[@]}"; do
  [ -x "$p" ] || { echo "skip (missing): $p"; continue; }
  bits=64 rec=$R64
  [ "$(od -An -tu1 -j4 -N1 "$p" | tr -d ' ')" = 1 ] && { bits=32 rec=$R32; }
  lims=(std); [ $bits = 32 ] && lims=(std 3gb)
  for layout in flexible legacy; do
    for lim in "${lims[@]}"; do
      flags=(--no-aslr); eflags=(--no-aslr)
      [ $layout = legacy ] && { flags+=(--legacy); eflags+=(--layout legacy); }
      [ $lim = 3gb ] && { flags+=(--3gb); eflags+=(--3gb); }
      key=$(echo "${p#/}" | tr / %).$layout.$lim
      "${ENV[@]}" "$rec" "${flags[@]}" -o "$OUT/$key.{stage}.rec" "$p" > "$OUT/$key.rec.status"
      for stage in exec loaded entry; do
        "${ENV[@]}" "$ELFMAP" run "${eflags[@]}" --stage $stage "$p" > "$OUT/$key.$stage.elfmap" 2>&1
        if cmp -s "$OUT/$key.$stage.elfmap" "$OUT/$key.$stage.rec.maps"; then
          same=$((same + 1))
        else
          differ=$((differ + 1))
          echo "DIFFERENT: $p $layout $lim $stage"
          diff "$OUT/$key.$stage.elfmap" "$OUT/$key.$stage.rec.maps" | head -10
        fi
      done
    done
  done
done
echo "recorder vs elfmap run: $same identical, $differ different"
[ $differ = 0 ]
