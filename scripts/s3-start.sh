#!/usr/bin/env bash
# scripts/s3-start.sh DIR — a real S3 endpoint on 127.0.0.1 for PixelFox's tests and benchmarks:
# a single-node Ceph RADOS Gateway (Debian's ceph 16.2): one monitor, one OSD on memstore (RAM,
# saved to DIR on a clean stop), no mgr, cephx off, one S3 user. Started by the test session
# (tests/s3server.py) with its own DIR and free ports, stopped by scripts/s3-stop.sh DIR.
# Idempotent: creates the cluster in DIR on first use, reuses it afterwards, and only prints
# the endpoint when the daemons in DIR are already up. Packages: scripts/install-system-deps.sh s3.
# Env: S3_PORT (17480) MON_PORT (13300, +1) OSD_PORT_MIN (16800, +99) S3_ACCESS_KEY S3_SECRET_KEY
#      MEMSTORE_BYTES (4 GiB advertised; RAM holds only what is stored) S3_START_TIMEOUT (120 s).
# Ports and keys are fixed when DIR is created (kept in DIR/settings, mode 600).
# Adapted from the measured recipe in ../shared/recipes/ceph-s3 (its gotchas are kept below).
set -euo pipefail

DIR=${1:?usage: s3-start.sh DATA_DIR}
mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
if [ -s "$DIR/settings" ]; then
  . "$DIR/settings"  # an existing cluster keeps the ports and keys it was made with (the monmap holds the port)
else
  S3_PORT=${S3_PORT:-17480}
  MON_PORT=${MON_PORT:-13300}
  OSD_PORT_MIN=${OSD_PORT_MIN:-16800}
  S3_ACCESS_KEY=${S3_ACCESS_KEY:-s3testaccesskey}
  S3_SECRET_KEY=${S3_SECRET_KEY:-s3testsecretkey0000000000000000000000000}
  umask 077
  printf '%s\n' "S3_PORT=$S3_PORT" "MON_PORT=$MON_PORT" "OSD_PORT_MIN=$OSD_PORT_MIN" \
    "S3_ACCESS_KEY='$S3_ACCESS_KEY'" "S3_SECRET_KEY='$S3_SECRET_KEY'" > "$DIR/settings"
fi
MEMSTORE_BYTES=${MEMSTORE_BYTES:-4294967296}
TIMEOUT=${S3_START_TIMEOUT:-120}
CONF=$DIR/ceph.conf
export CEPH_CONF=$CONF
CEPH="ceph -c $CONF --connect-timeout 10"
S3_ENDPOINT=http://127.0.0.1:$S3_PORT

say() { echo "[s3-start $(date +%T.%3N)] $*" >&2; }
alive() { [ -s "$DIR/run/$1.pid" ] && kill -0 "$(cat "$DIR/run/$1.pid")" 2>/dev/null; }
s3_up() { curl -s -o /dev/null -m 2 "$S3_ENDPOINT/"; }
report() {
  echo "S3_ENDPOINT=$S3_ENDPOINT S3_ACCESS_KEY=$S3_ACCESS_KEY S3_SECRET_KEY=$S3_SECRET_KEY"
  echo "PIDS mon=$(cat "$DIR/run/mon.pid") osd=$(cat "$DIR/run/osd.pid") rgw=$(cat "$DIR/run/rgw.pid")"
}
wait_for() { # wait_for SECONDS DAEMON DESCRIPTION COMMAND...   (fails fast if DAEMON died)
  local t=$1 d=$2 what=$3; shift 3
  local end=$((SECONDS + t))
  until "$@" >/dev/null 2>&1; do
    alive "$d" || { say "$d exited while waiting for $what; see $DIR/log"; exit 1; }
    if [ $SECONDS -ge $end ]; then say "timed out waiting for $what; see $DIR/log"; exit 1; fi
    sleep 0.1
  done
}
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
osd_active() { ceph --admin-daemon "$DIR/run/osd.0.$(cat "$DIR/run/osd.pid").asok" status | grep -q '"state": "active"'; }

# 1. packages
if ! command -v ceph-mon >/dev/null || ! command -v ceph-osd >/dev/null || ! command -v radosgw >/dev/null \
   || ! command -v curl >/dev/null; then
  bash "$(dirname "$0")/install-system-deps.sh" s3 >&2
fi

# 2. already running?
if alive mon && alive osd && alive rgw && s3_up; then report; exit 0; fi
for d in rgw osd mon; do  # half-up leftovers: stop them cleanly first
  if alive $d; then p=$(cat "$DIR/run/$d.pid"); kill "$p"; for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done; fi
done
for port in "$S3_PORT" "$MON_PORT" "$((MON_PORT + 1))"; do
  if port_busy "$port"; then say "127.0.0.1:$port is already in use (another instance? set S3_PORT/MON_PORT)"; exit 1; fi
done
mkdir -p "$DIR/run" "$DIR/log" "$DIR/mon.a" "$DIR/osd.0" "$DIR/rgw"
for f in "$DIR"/log/*.log; do [ -e "$f" ] && mv -f "$f" "$f.1"; done  # memstore dumps its index at every stop

# 3. config (rewritten every time; the fsid is kept)
[ -s "$DIR/fsid" ] || cat /proc/sys/kernel/random/uuid > "$DIR/fsid"
cat > "$CONF" <<EOF
[global]
fsid = $(cat "$DIR/fsid")
mon host = [v2:127.0.0.1:$MON_PORT,v1:127.0.0.1:$((MON_PORT + 1))]
mon initial members = a
public addr = 127.0.0.1
cluster addr = 127.0.0.1
ms bind ipv4 = true
ms bind ipv6 = false
ms bind port min = $OSD_PORT_MIN
ms bind port max = $((OSD_PORT_MIN + 99))
auth cluster required = none
auth service required = none
auth client required = none
auth allow insecure global id reclaim = false
keyring = $DIR/keyring
run dir = $DIR/run
admin socket = $DIR/run/\$name.\$pid.asok
log file = $DIR/log/\$name.log
log to stderr = false
err to stderr = false
log to syslog = false
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
mon max pg per osd = 1000
mon data avail warn = 2
mon data avail crit = 1
# every pool create/set is a paxos round: 1 s each by default, rgw needs ~20 of them
paxos propose interval = 0.05
paxos min wait = 0.01
[mon]
mon data = $DIR/mon.\$id
mon cluster log file = $DIR/log/cluster.log
[osd]
osd data = $DIR/osd.\$id
osd objectstore = memstore
memstore device bytes = $MEMSTORE_BYTES
osd fast shutdown = false
osd failsafe full ratio = 0.99
[client]
# radosgw's built-in default is 'secure' (needs cephx); with auth none it must allow crc
ms mon client mode = crc secure
[client.rgw.a]
rgw data = $DIR/rgw
rgw frontends = beast endpoint=127.0.0.1:$S3_PORT
rgw thread pool size = 64
rgw enable usage log = false
rgw crypt require ssl = false
# reclaim deleted/overwritten object data within a minute instead of 2 h (memstore is RAM)
rgw gc obj min wait = 30
rgw gc processor period = 30
rgw gc processor max time = 30
EOF

# 4. monitor (created once)
if [ ! -e "$DIR/mon.a/done" ]; then
  rm -rf "$DIR/mon.a"; mkdir -p "$DIR/mon.a"
  ceph-authtool --create-keyring "$DIR/keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
  monmaptool --create --fsid "$(cat "$DIR/fsid")" \
    --addv a "[v2:127.0.0.1:$MON_PORT,v1:127.0.0.1:$((MON_PORT + 1))]" "$DIR/monmap" >/dev/null
  ceph-mon -c "$CONF" --mkfs -i a --monmap "$DIR/monmap" --keyring "$DIR/keyring"
  touch "$DIR/mon.a/done"
fi
say "starting mon"
ceph-mon -c "$CONF" -f -i a </dev/null >>"$DIR/log/mon.a.out" 2>&1 &
echo $! > "$DIR/run/mon.pid"
wait_for 30 mon "the monitor" $CEPH -s

# 5. OSD (created once)
if [ ! -e "$DIR/osd.0/done" ]; then
  rm -rf "$DIR/osd.0"; mkdir -p "$DIR/osd.0"
  uuid=$(cat /proc/sys/kernel/random/uuid)
  id=$($CEPH osd new "$uuid")
  [ "$id" = 0 ] || { say "unexpected osd id $id"; exit 1; }
  ceph-osd -c "$CONF" -i 0 --mkfs --osd-uuid "$uuid" >>"$DIR/log/osd.0.out" 2>&1
  touch "$DIR/osd.0/done"
fi
say "starting osd"
ceph-osd -c "$CONF" -f -i 0 </dev/null >>"$DIR/log/osd.0.out" 2>&1 &
echo $! > "$DIR/run/osd.pid"
wait_for 60 osd "osd.0 active" osd_active

# 6. RADOS Gateway and the S3 user
say "starting radosgw"
radosgw -c "$CONF" -f -n client.rgw.a </dev/null >>"$DIR/log/rgw.a.out" 2>&1 &
echo $! > "$DIR/run/rgw.pid"
wait_for "$TIMEOUT" rgw "radosgw on $S3_ENDPOINT" s3_up
if [ ! -e "$DIR/rgw/user.done" ]; then
  radosgw-admin -c "$CONF" user create --uid=tester --display-name=tester \
    --access-key="$S3_ACCESS_KEY" --secret-key="$S3_SECRET_KEY" >/dev/null
  touch "$DIR/rgw/user.done"
fi
say "S3 ready"
report
