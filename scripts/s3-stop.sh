#!/usr/bin/env bash
# scripts/s3-stop.sh DIR — stops the Ceph daemons that scripts/s3-start.sh DIR started, by their
# recorded PIDs, one after the other (rgw, then the OSD — which saves its memstore to DIR/osd.0 on
# a clean stop — then the monitor; stopping rgw and the OSD at once hangs rgw for 120 s).
set -uo pipefail
DIR=${1:?usage: s3-stop.sh DATA_DIR}
for d in rgw osd mon; do
  f=$DIR/run/$d.pid
  [ -s "$f" ] || continue
  p=$(cat "$f")
  if kill -0 "$p" 2>/dev/null; then
    kill -TERM "$p"
    for _ in $(seq 300); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$p" 2>/dev/null; then echo "[s3-stop] $d ($p) did not stop in 30 s, SIGKILL" >&2; kill -KILL "$p"; fi
    echo "[s3-stop] stopped $d ($p)" >&2
  fi
  rm -f "$f"
done
