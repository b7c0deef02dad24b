#!/usr/bin/env bash
# The README's main job on embedded defaults (run through `sudo ./run demo`):
# a local 3-host testbed, the example scenario deployed across it, a command sequence that
# shows cross-host connectivity, where each VM runs, and a clean release.
set -euo pipefail
cd "$(dirname "$0")/.."
ediv=.venv/bin/ediv
work=${EDIV_DEMO_DIR:-/var/lib/ediv/demo}
bed="$work/testbed"
state="$work/state.db"
scenario=${EDIV_DEMO_SCENARIO:-examples/simple6.xml}
name=$(sed -n 's:.*<simulation_name>\(.*\)</simulation_name>.*:\1:p' "$scenario" | head -1)

step() { printf '\n== %s\n' "$*"; }
finish() {
  rc=$?
  if [[ $rc -ne 0 ]]; then echo "demo failed (exit $rc); cleaning up" >&2; fi
  $ediv release "$name" --state "$state" >/dev/null 2>&1 || true
  $ediv testbed down --dir "$bed" >/dev/null 2>&1 || true
  rm -f "$state" "$state-wal" "$state-shm"
  exit $rc
}
trap finish EXIT

step "validate $scenario"
$ediv validate "$scenario"

step "plan it on the embedded 3-host cluster (no hosts needed)"
$ediv plan "$scenario" -a RoundRobin

step "bring up a local testbed: 3 hosts in network namespaces, each with its own sshd"
$ediv testbed down --dir "$bed" >/dev/null 2>&1 || true
$ediv testbed up --hosts 3 --dir "$bed"

step "deploy $name across the testbed (containers; VXLAN segments join the hosts)"
$ediv deploy "$scenario" -c "$bed/cluster.conf" --state "$state" -a RoundRobin

step "where each VM runs"
$ediv locate --state "$state"
$ediv segments --state "$state"

step "run sequence 'check': every VM pings across routers and hosts"
$ediv exec "$name" check --state "$state"

step "release: nothing is left on any host"
$ediv release "$name" --state "$state"
$ediv testbed down --dir "$bed"
trap - EXIT
rm -f "$state" "$state-wal" "$state-shm"
echo "demo complete"
