#!/bin/sh
# Smoke test of the built test programs: check.sh BUILD_DIR PROG...
# Every PROG must exit 0; then special cases and a few readelf facts the tests rely on.
set -u
B=$1; shift
fail=0
bad() { echo "FAIL: $*" >&2; fail=1; }

for p in "$@"; do
    out=$("$p" 2>&1) || bad "$p exited $? : $out"
done

# RUNPATH is not inherited by libchain.so, so its libleaf.so must not be found.
if out=$("$B/main_runpath_missing" 2>&1); then
    bad "main_runpath_missing started (should fail to load)"
else
    case $out in
        *"libleaf.so: cannot open shared object file"*) ;;
        *) bad "main_runpath_missing: unexpected error: $out" ;;
    esac
fi

# LD_PRELOAD of a library into a libc-only program.
LD_PRELOAD="$(cd "$B/r1" && pwd)/libleaf.so" "$B/main_preload_target" >/dev/null 2>&1 \
    || bad "main_preload_target with LD_PRELOAD failed"

# Structural facts.
ph() { readelf -lW "$1"; }
for f in align2m64pie align2m64 align2m32pie align2mstaticpie64 libalign.so libold2m.so m32/libalign.so m32/libold2m.so; do
    ph "$B/$f" | awk '$1=="LOAD" && $NF!="0x200000" {e=1} END {exit e}' || bad "$f: PT_LOAD p_align is not 0x200000"
done
for f in execstack64 execstack32 libexecstack.so; do
    ph "$B/$f" | grep -Eq 'GNU_STACK.* RWE ' || bad "$f: PT_GNU_STACK is not RWE"
done
for f in nogs64 nogs32 nogs32pie; do
    ph "$B/$f" | grep -q GNU_STACK && bad "$f: still has PT_GNU_STACK"
done
readelf -dW "$B/libtextrel32.so" | grep -q TEXTREL || bad "libtextrel32.so: no TEXTREL"
readelf -dW "$B/main_rpath" | grep -q '(RPATH)' || bad "main_rpath: no DT_RPATH"
readelf -dW "$B/main_runpath_ok" | grep -q '(RUNPATH)' || bad "main_runpath_ok: no DT_RUNPATH"
for f in r1/libleaf.so lib/libchain.so; do
    [ -e "$B/$(basename $f)" ] && bad "$(basename $f) must not be in $B itself"
done
ph "$B/textat58" | grep -Eq 'LOAD +0x0+ 0x0*58000000 ' || bad "textat58: first PT_LOAD not at 0x58000000"

[ $fail = 0 ] && echo "check: all $# programs ran OK, main_runpath_missing failed as expected"
exit $fail
