"""What VNUML set up inside each VM after boot: ``<user>`` accounts (primary and extra
groups, a home, ``<ssh_key>`` in its authorized_keys), ``<global><ssh_key>`` in root's
authorized_keys, and ``<host_mapping/>`` in /etc/hosts. One POSIX shell script per VM, through
the driver's exec channel, so container and UML VMs get the same thing.

As VNUML did: the primary group is ``group=`` (default: a group named as the user), extra
``<group>`` children make the user a member; uids and gids are the next free ones from 1000
(the VM's own /etc/passwd decides, not the host's). Accounts have a locked password. Existing
accounts are kept (a second run changes nothing).
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable

from ediv.errors import InputError
from ediv.scenario.model import User

_KEY = re.compile(r"^(?:[a-z0-9-]+(?:=\"[^\"]*\")?(?:,[a-z0-9-]+(?:=\"[^\"]*\")?)* )?"
                  r"(?:ssh-|ecdsa-|sk-)[A-Za-z0-9@.-]+ [A-Za-z0-9+/=]+(?: .*)?$")

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
add_keys() {  # HOME OWNER KEYS...: the keys (one per argument) in HOME/.ssh/authorized_keys
  h=$1; o=$2; shift 2
  mkdir -p "$h/.ssh"
  for k in "$@"; do
    grep -qxF "$k" "$h/.ssh/authorized_keys" 2>/dev/null || echo "$k" >> "$h/.ssh/authorized_keys"
  done
  chmod 700 "$h/.ssh"; chmod 600 "$h/.ssh/authorized_keys"
  chown -R "$o" "$h/.ssh"
}
"""

HOSTS_BEGIN = "# ediv host_mapping begin"
HOSTS_END = "# ediv host_mapping end"
MAX_KEY_FILE = 64 * 1024


def setup_script(users: list[User], *, keys: Callable[[str], list[str]],
                 root_keys: list[str] = (), hosts: dict[str, str] | None = None) -> str:
    """The shell script for one VM (empty when there is nothing to do). ``keys`` turns an
    ``<ssh_key>`` reference into the key lines it holds."""
    if not users and not root_keys and not hosts:
        return ""
    q = shlex.quote
    lines = [_PRELUDE]
    for u in users:
        name = q(u.username)
        lines.append(f"add_user {name} {q(u.group or u.username)}")
        for g in u.groups:
            lines.append(f"add_group {q(g)}; add_member {q(g)} {name}")
        user_keys = [k for ref in u.ssh_keys for k in keys(ref)]
        if user_keys:
            lines.append(f"add_keys /home/{name} {name} " + " ".join(map(q, user_keys)))
    rk = [k for ref in root_keys for k in keys(ref)]
    if rk:
        lines.append("add_keys /root 0 " + " ".join(map(q, rk)))
    if hosts:
        block = "\n".join([HOSTS_BEGIN, *(f"{a} {n}" for n, a in hosts.items()), HOSTS_END])
        lines.append(f"awk -v b={q(HOSTS_BEGIN)} -v e={q(HOSTS_END)} "
                     "'$0==b {s=1} !s {print} $0==e {s=0}' /etc/hosts > /etc/hosts.ediv "
                     "2>/dev/null || true")
        lines.append(f"printf '%s\\n' {q(block)} >> /etc/hosts.ediv")
        lines.append("cat /etc/hosts.ediv > /etc/hosts; rm -f /etc/hosts.ediv")
    return "\n".join(lines) + "\n"


def key_lines(text: str, where: str) -> list[str]:
    """The public keys of an authorized_keys-style file: one per non-comment line."""
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if not _KEY.match(line):
            raise InputError(f"{where}: not an SSH public key line: {line[:40]!r}", "ssh_key")
        out.append(line)
    return out
