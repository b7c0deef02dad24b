"""VNUML ``<user>`` in a VM: the account, its primary and extra groups, and a home, set up
inside the VM after boot by one POSIX shell script through the driver's exec channel, so
container and UML VMs get the same thing.

As VNUML did: the primary group is ``group=`` (default: a group named as the user), extra
``<group>`` children make the user a member; uids and gids are the next free ones from 1000
(the VM's own /etc/passwd decides, not the host's). Accounts have a locked password. Existing
accounts are kept (a second run changes nothing).
"""

from __future__ import annotations

import shlex

from ediv.scenario.model import User

_PRELUDE = r"""set -e
touch /etc/passwd /etc/group
next_id() { awk -F: 'BEGIN{m=999} $3>m && $3<60000 {m=$3} END{print m+1}' "$1"; }
add_group() {
  grep -q "^$1:" /etc/group || echo "$1:x:$(next_id /etc/group):" >> /etc/group
}
add_member() {
  awk -F: -v OFS=: -v g="$1" -v u="$2" '$1==g { n=split($4,a,","); f=0
    for (i=1;i<=n;i++) if (a[i]==u) f=1
    if (!f) $4 = ($4=="" ? u : $4 "," u) } {print}' /etc/group > /etc/group.ediv
  cat /etc/group.ediv > /etc/group; rm -f /etc/group.ediv
}
add_user() {
  u=$1; g=$2
  add_group "$g"
  gid=$(awk -F: -v g="$g" '$1==g {print $3}' /etc/group)
  if ! grep -q "^$u:" /etc/passwd; then
    uid=$(next_id /etc/passwd)
    echo "$u:x:$uid:$gid::/home/$u:/bin/sh" >> /etc/passwd
    if [ -f /etc/shadow ]; then echo "$u:!:1::::::" >> /etc/shadow; fi
  fi
  uid=$(awk -F: -v u="$u" '$1==u {print $3}' /etc/passwd)
  mkdir -p "/home/$u"
  chown "$uid:$gid" "/home/$u"
  chmod 755 "/home/$u"
}
"""


def users_script(users: list[User]) -> str:
    """The shell script that creates ``users`` (empty when there are none)."""
    if not users:
        return ""
    lines = [_PRELUDE]
    for u in users:
        name = shlex.quote(u.username)
        lines.append(f"add_user {name} {shlex.quote(u.group or u.username)}")
        for g in u.groups:
            lines.append(f"add_group {shlex.quote(g)}; add_member {shlex.quote(g)} {name}")
    return "\n".join(lines) + "\n"
