#!/usr/bin/env bash
# The README's main job on embedded defaults. Run through `sudo ./run demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
ediv=.venv/bin/ediv
out=${EDIV_DEMO_OUT:-out/demo}
mkdir -p "$out"

step() { printf '\n== %s\n' "$*"; }

step "validate the example scenarios"
$ediv validate examples/simple6.xml
$ediv validate examples/sites51.xml

step "partition algorithms available"
$ediv algorithms

step "plan sites51 (51 VMs) on the embedded 3-host cluster with RoundRobin"
$ediv plan examples/sites51.xml -a RoundRobin

step "WeightedRoundRobin with host1 busy (load 0.9): EDIV gives it fewer VMs"
$ediv plan examples/sites51.xml -a WeightedRoundRobin --load host1=0.9 --load host2=0.1 --load host3=0.1

step "MinCut: fewer nets cut across hosts"
$ediv plan examples/sites51.xml -a MinCut

step "split it per host on examples/cluster.conf with restrictions"
$ediv split examples/sites51.xml -c examples/cluster.conf -r examples/restrictions.xml -o "$out/split"

step "topology picture"
$ediv map examples/sites51.xml -c examples/cluster.conf -a MinCut -o "$out/sites51.svg"
echo "done: see $out"
