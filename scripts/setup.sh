#!/usr/bin/env bash
# Install the system packages and the Python venv (.venv) that ediv and its tests use.
# Idempotent: packages already present are not fetched again.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  python3-venv openssh-server user-mode-linux busybox-static e2fsprogs iproute2
  iputils-ping sblim-wbemcli graphviz qemu-utils procps util-linux kmod tcpdump
  mmdebstrap
)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "setup: missing system packages: ${missing[*]}; run as root (sudo)" >&2
    exit 1
  fi
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # sshd is started by the testbed inside namespaces, never as a system service
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
if [[ ! -x .venv/bin/python ]]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.ediv-installed
if [[ ! -f $stamp || pyproject.toml -nt $stamp ]]; then
  .venv/bin/python -m pip install -q --upgrade pip "setuptools>=77" wheel
  .venv/bin/python -m pip install -q -e '.[test]'
  touch "$stamp"
fi
