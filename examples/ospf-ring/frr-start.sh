#!/bin/sh
# Start FRR's zebra and ospfd in an ediv VM (UML or container): no systemd, no frrinit.
# $1 is the router id; it is also put on lo as a /32 and advertised, so every router can be
# pinged at its id. OSPF runs on every ethN interface as a point-to-point link, with short
# timers (hello 1 s, dead 4 s) so that a lab converges in seconds.
set -e
rid=$1
ip addr add "$rid/32" dev lo 2>/dev/null || true
for d in /run/frr /var/log/frr /var/tmp/frr; do mkdir -p "$d"; chown frr:frr "$d"; done
{
  echo "hostname $(hostname)"
  echo "log file /var/log/frr/frr.log"
  for i in $(ls /sys/class/net | grep '^eth'); do
    printf 'interface %s\n ip ospf network point-to-point\n' "$i"
    printf ' ip ospf hello-interval 1\n ip ospf dead-interval 4\n!\n'
  done
  printf 'router ospf\n ospf router-id %s\n network 198.18.50.0/24 area 0\n' "$rid"
  printf ' network %s/32 area 0\n!\n' "$rid"
} > /etc/frr/frr.conf
chown frr:frr /etc/frr/frr.conf
/usr/lib/frr/zebra -d </dev/null >/dev/null 2>&1
/usr/lib/frr/ospfd -d </dev/null >/dev/null 2>&1
# the integrated configuration (vtysh.conf: service integrated-vtysh-config) into both
vtysh -b
