#!/bin/bash
# The same measurements on this host (the kernel elfmap was developed on), with the very
# binaries the guests ran (the snapshot in the root image's staging directory), the same
# program list, environment and stack limit as in the guests.
#
#   lab/host-record.sh DATA_DIR
#
# Writes DATA/results/$(uname -r)/ in the guests' layout, plus a file "host" that marks it.
set -euo pipefail
DATA=$1
BIN=$DATA/root-staging/lab/bin
REL=$(uname -r)
RES=$DATA/results/$REL
TMP=$DATA/results/.$REL.new
rm -rf "$TMP"; mkdir -p "$TMP"
echo "== host $REL: the same programs, natively"
start=$(date +%s)
ulimit -s 8192   # the guests' RLIMIT_STACK (the kernel's default for init)
env -i PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin HOME=/root LC_ALL=C TERM=dumb \
  LAB_BIN="$BIN" "$BIN/driver64" "$TMP" "$DATA/cases.tsv" 1 2> "$TMP/console.log"
echo $(( $(date +%s) - start )) > "$TMP/seconds"
echo "this host, not a guest" > "$TMP/host"
rm -rf "$RES"; mv "$TMP" "$RES"
echo "   results in $RES"
