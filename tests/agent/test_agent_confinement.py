"""Confinement of VMs, tried as a hostile operator would (docs/threat-model.md).

Root only, real VMs. Every "secret" and sentinel is a file these tests create in their own
directories; nothing of the host is written. After each attack the sentinel trees are
compared (``find -newer STAMP`` and contents): nothing outside the VM dirs changed.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from agent_helpers import Agent, deploy_bundle, scenario_uid, unique_key

UML_KERNEL = "/usr/bin/linux"
needs_uml = pytest.mark.skipif(not os.access(UML_KERNEL, os.X_OK),
                               reason=f"{UML_KERNEL} missing (apt-get install user-mode-linux)")
pytestmark = [pytest.mark.root,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, mounts)")]


@pytest.fixture
def sentinel():
    """A directory outside every VM and temp dir a container hides (so only file permissions
    protect it): world-readable/writable, with a 0600 secret, a 0644 public file and a STAMP
    taken before the attacks. Removed afterwards."""
    d = Path(tempfile.mkdtemp(prefix="ediv-test-sentinel-", dir="/var/lib"))
    try:
        os.chmod(d, 0o777)
        token = secrets.token_hex(16)
        (d / "secret.txt").write_text(f"SECRET-{token}\n")
        os.chmod(d / "secret.txt", 0o600)
        (d / "public.txt").write_text("public\n")
        os.chmod(d / "public.txt", 0o644)
        stamp = d.parent / f".{d.name}.stamp"
        stamp.write_text("")
        old = time.time() - 60
        for p in (d / "secret.txt", d / "public.txt", d):
            os.utime(p, (old, old))
        yield d, token, stamp
    finally:
        shutil.rmtree(d, ignore_errors=True)
        (d.parent / f".{d.name}.stamp").unlink(missing_ok=True)


def changed_since(stamp: Path, *roots: Path) -> list[str]:
    out = subprocess.run(["find", *map(str, roots), "-newer", str(stamp)], capture_output=True,
                         text=True, check=False).stdout
    return out.split()


def tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): p.read_text() if p.is_file() else "<dir>"
            for p in sorted(root.rglob("*"))}


def _scenario(key: str, vms: str) -> str:
    return (f"<vnuml><global><version>1.8</version><simulation_name>{key}</simulation_name>"
            f'<vm_mgmt type="none"/></global><net name="N" mode="virtual_bridge"/>{vms}</vnuml>')


_deploy = deploy_bundle


def _exec(agent, key: str, vm: str, command: str) -> tuple[int, str]:
    """One ad-hoc command (appended as a sequence to the stored scenario)."""
    path = agent.state / key / "bundle" / "scenario.xml"
    xml = path.read_text()
    seq = f"x{secrets.token_hex(4)}"
    cmd = command.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    xml = xml.replace(f'<vm name="{vm}" ', f'<vm name="{vm}" ', 1)
    head, sep, tail = xml.partition(f'<vm name="{vm}" ')
    body, end, rest = tail.partition("</vm>")
    path.write_text(head + sep + body + f'<exec seq="{seq}" type="verbatim">{cmd}</exec>'
                    + end + rest)
    res = agent("exec", seq, "--key", key, timeout=120)
    r = res.result["results"][0]
    return r["exit_code"], r["output"]


def _status_of(pid: int) -> dict[str, str]:
    return dict(line.split(":\t", 1) for line in
                Path(f"/proc/{pid}/status").read_text().splitlines() if ":\t" in line)


def _argv0(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
    except OSError:  # a UML helper that just ended
        return b""


def _vm_pids(key: str, vm: str) -> list[int]:
    out = []
    for name in filter(str.isdigit, os.listdir("/proc")):
        try:
            env = Path(f"/proc/{name}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(v.startswith(f"EDIV_HOST_KEY={key}@".encode()) for v in env) \
                and f"EDIV_HOST_VM={vm}".encode() in env:
            out.append(int(name))
    return out


ESCAPE = r"""python3 - <<'EOF'
import os
os.makedirs("/tmp/jail", exist_ok=True)
fd = os.open("/", os.O_RDONLY)
os.chroot("/tmp/jail")
os.fchdir(fd)
for _ in range(64):
    os.chdir("..")
os.chroot(".")
try:
    with open("{target}/escaped.txt", "w") as f:
        f.write("escaped")
    print("wrote", os.path.exists("{target}/escaped.txt"))
except OSError as e:
    print("write failed", e)
try:
    print(open("{target}/secret.txt").read())
except OSError as e:
    print("read failed", e)
print(sorted(os.listdir("/"))[:40])
EOF"""


def test_container_vm_cannot_reach_host_secrets_devices_or_files(agent, tmp_path, sentinel,
                                                                 snapshot):
    d, token, stamp = sentinel
    pytest_secret = tmp_path / "own-secret.txt"
    pytest_secret.write_text(f"PYTEST-{token}\n")
    os.chmod(pytest_secret, 0o600)
    key = unique_key("hc")
    before = snapshot(key)
    dep = _deploy(agent, tmp_path, key, _scenario(
        key, '<vm name="c" type="container"><if id="1" net="N"><ipv4>198.18.40.1/24</ipv4>'
             "</if></vm>"))
    assert dep.rc == 0, dep.events
    uid = scenario_uid(key)

    # VM root is an unprivileged host uid; its bounding set lacks what no lab needs
    pids = _vm_pids(key, "c")
    inits = [p for p in pids if _status_of(p)["Uid"].split()[0] != "0"]
    assert inits and all(_status_of(p)["Uid"].split() == [str(uid)] * 4 for p in inits)
    rc, out = _exec(agent, key, "c", "id -u; cat /proc/self/uid_map; grep CapBnd /proc/self/status")
    lines = out.split("\n")
    assert lines[0] == "0" and lines[1].split() == ["0", str(uid), "65536"], out
    bnd = int(lines[2].split()[1], 16)
    assert not bnd & (1 << 16) and not bnd & (1 << 17) and not bnd & (1 << 27)  # module/rawio/mknod

    # secrets: the 0600 file (visible dir: the public file is readable), /etc/shadow,
    # /root, the test's own temp dir and the agent's state dir
    rc, out = _exec(agent, key, "c", f"cat {d}/public.txt")
    assert rc == 0 and out == "public\n"
    for path in (f"{d}/secret.txt", "/etc/shadow", str(pytest_secret),
                 str(agent.state / key / "journal.jsonl")):
        rc, out = _exec(agent, key, "c", f"cat {path}")
        assert rc != 0 and token not in out and "op" not in out, (path, out)
    rc, out = _exec(agent, key, "c", "ls -A /root /home /tmp; ls /etc/ssh/ | grep _key$ || true")
    assert rc == 0 and "_key" not in out.replace("_key.pub", ""), out
    assert "ediv" not in out and "pytest" not in out, out

    # devices: only the private minimal /dev, no disk node can be made, no host mount
    rc, out = _exec(agent, key, "c", "ls /dev")
    assert set(out.split()) <= {"null", "zero", "full", "random", "urandom", "tty", "net", "pts",
                                "shm", "ptmx", "fd", "stdin", "stdout", "stderr"}, out
    dev = os.stat("/").st_dev
    rc, out = _exec(agent, key, "c", f"mknod /tmp/disk b {os.major(dev)} {os.minor(dev)}")
    assert rc != 0, out
    for cmd in ("mount -t tmpfs none /mnt", "mount --bind / /mnt", "umount -l /tmp",
                "umount -l /dev", "mount -t ext4 /dev/root /mnt"):
        rc, out = _exec(agent, key, "c", cmd)
        assert rc != 0, (cmd, out)

    # writes to a host path land in the VM's overlay only; a chroot escape ends in the VM
    rc, out = _exec(agent, key, "c", f"echo pwned > {d}/public.txt; echo new > {d}/new.txt; "
                                     f"cat {d}/new.txt")
    assert "new" in out
    rc, out = _exec(agent, key, "c", ESCAPE.format(target=d))
    assert token not in out, out
    assert changed_since(stamp, d) == []
    assert tree(d) == {"public.txt": "public\n", "secret.txt": f"SECRET-{token}\n"}

    assert agent("release", "--key", key).rc == 0
    assert snapshot(key) == before


ONE_CONTAINER = '<vm name="c" type="container"><if id="1" net="N"/></vm>'


def _tmpfs_agent(tmp_path: Path, snapshot, size: str) -> tuple[Agent, str, dict]:
    """An agent whose ``container_tmpfs_size`` is ``size``, a new key, the host before."""
    config = tmp_path / "agent.json"
    config.write_text(json.dumps({"container_tmpfs_size": size}))
    key = unique_key("tf")
    return Agent(tmp_path / "state", config), key, snapshot(key)


@pytest.mark.parametrize("size", ["8m", ""])
def test_container_writes_land_in_a_bounded_tmpfs_of_the_scenario(tmp_path, snapshot, size):
    """A VM's writes cost memory of its scenario's own tmpfs (``container_tmpfs_size``), not
    the host's disk, and stop at its size; empty: they go to the state dir's disk."""
    agent, key, before = _tmpfs_agent(tmp_path, snapshot, size)
    try:
        res = _deploy(agent, tmp_path, key, _scenario(key, ONE_CONTAINER))
        assert res.rc == 0, res.events
        root = agent.state / key / "containers"
        mounts = [line.split() for line in Path("/proc/mounts").read_text().splitlines()
                  if line.split()[1] == str(root)]
        _, out = _exec(agent, key, "c",
                        "dd if=/dev/zero of=/srv/big bs=1M count=32 2>&1; echo rc=$?")
        upper_file = root / "c" / "upper" / "srv" / "big"
        if size:
            assert [(m[2], "size=8192k" in m[3]) for m in mounts] == [("tmpfs", True)]
            assert "No space left on device" in out and "rc=1" in out, out
        else:
            assert mounts == [] and out.endswith("rc=0\n"), out
            assert upper_file.stat().st_size == 32 << 20  # on the state dir's disk
        assert agent("release", "--key", key).rc == 0
        assert snapshot(key) == before
    finally:
        agent("purge")


def test_container_tmpfs_size_that_is_not_a_size_refused(tmp_path, snapshot):
    agent, key, before = _tmpfs_agent(tmp_path, snapshot, "lots")
    try:
        res = _deploy(agent, tmp_path, key, _scenario(key, ONE_CONTAINER))
        assert res.rc == 1 and "container_tmpfs_size" in res.result["message"], res.events
        assert snapshot(key) == before
    finally:
        agent("purge")


def test_container_root_directory_outside_allowed_roots_refused(tmp_path, snapshot):
    from ediv.agent.rootfs import populate_busybox_tree

    tree_dir = populate_busybox_tree(tmp_path / "bb")
    agent = Agent(tmp_path / "state")  # default config: tmp_path is not an image root
    key = unique_key("hr")
    before = snapshot(key)
    try:
        res = _deploy(agent, tmp_path, key, _scenario(
            key, f'<vm name="c" type="container"><filesystem type="hostfs">{tree_dir}'
                 '</filesystem><if id="1" net="N"/></vm>'))
        assert res.rc == 1
        assert str(tree_dir) in res.result["message"]
        assert "allowed image roots" in res.result["message"]
        assert snapshot(key) == before
    finally:
        agent("purge")


@needs_uml
@pytest.mark.slow
def test_uml_guest_cannot_reach_host_files(agent, tmp_path, rootfs_image, snapshot):
    secret_dir = tmp_path / "uml-secret"
    secret_dir.mkdir()
    token = secrets.token_hex(16)
    (secret_dir / "secret.txt").write_text(f"SECRET-{token}\n")
    os.chmod(secret_dir, 0o777)
    stamp = tmp_path / "stamp"
    stamp.write_text("")
    old = time.time() - 60
    os.utime(secret_dir / "secret.txt", (old, old))
    os.utime(secret_dir, (old, old))
    key = unique_key("hu")
    before = snapshot(key)
    dep = _deploy(agent, tmp_path, key, _scenario(
        key, f'<vm name="u" type="uml"><filesystem type="cow">{rootfs_image}</filesystem>'
             '<mem>64M</mem><if id="1" net="N"><ipv4>198.18.41.1/24</ipv4></if></vm>'))
    assert dep.rc == 0, dep.events
    uid = scenario_uid(key)
    kernels = {p: _status_of(p) for p in _vm_pids(key, "u") if _argv0(p) == b"/linux"}
    assert kernels
    for st in kernels.values():
        assert st["Uid"].split() == [str(uid)] * 4 and st["Gid"].split() == [str(uid)] * 4
        assert int(st["CapEff"], 16) == 0 and st.get("Groups", "").strip() == ""
    vm_dir = agent.state / key / "vms" / "u"
    for path, mode in ((vm_dir, 0o700), (vm_dir / "share", 0o700),
                       (vm_dir / "disk" / "root.cow", 0o600)):
        st = path.stat()
        assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (uid, uid, mode), path

    attacks = [
        f"mkdir -p /mnt/a && mount -t hostfs none /mnt/a -o {secret_dir} && "
        "ls -A /mnt/a; cat /mnt/a/secret.txt; echo pwn > /mnt/a/new.txt",
        f"mkdir -p /mnt/b && mount -t hostfs none /mnt/b -o /../../../..{secret_dir} && "
        "ls -A /mnt/b; cat /mnt/b/secret.txt; echo pwn > /mnt/b/new.txt",
        # a symlink planted in the VM's own share, then followed by a hostfs mount
        "mkdir -p /mnt/s /mnt/c && mount -t hostfs none /mnt/s -o /share && "
        f"ln -sf / /mnt/s/evil && mount -t hostfs none /mnt/c -o /share/evil{secret_dir} && "
        "ls -A /mnt/c; cat /mnt/c/secret.txt; echo pwn > /mnt/c/new.txt",
        "mkdir -p /mnt/r && mount -t hostfs none /mnt/r -o / && ls -A /mnt/r",
    ]
    outputs = []
    for cmd in attacks:
        _rc, out = _exec(agent, key, "u", cmd)
        outputs.append(out)
        assert token not in out, (cmd, out)
    # what hostfs shows at its top is the jail: its share, no host directory
    assert outputs[-1].split() == ["share"], outputs
    assert changed_since(stamp, secret_dir) == []
    assert sorted(p.name for p in secret_dir.iterdir()) == ["secret.txt"]
    assert agent("release", "--key", key).rc == 0
    assert snapshot(key) == before


@needs_uml
def test_uml_images_outside_allowed_roots_refused(tmp_path, rootfs_image, snapshot):
    agent = Agent(tmp_path / "state")  # default config: the test's temp dirs are not allowed
    image = tmp_path / "direct.img"
    shutil.copy(rootfs_image, image)
    try:
        for kind, path in (("direct", image), ("cow", rootfs_image), ("hostfs", tmp_path)):
            key = unique_key("hi")
            before = snapshot(key)
            res = _deploy(agent, tmp_path, key, _scenario(
                key, f'<vm name="u" type="uml"><filesystem type="{kind}">{path}</filesystem>'
                     '<if id="1" net="N"/></vm>'))
            assert res.rc == 1, res.events
            msg = res.result["message"]
            assert f"filesystem {path} is outside the allowed image roots" in msg, msg
            assert "/usr/share/vnuml/filesystems/" in msg
            assert snapshot(key) == before
    finally:
        agent("purge")


@needs_uml
def test_uml_direct_image_not_writable_by_the_scenario_uid_refused(agent, tmp_path,
                                                                    rootfs_image, snapshot):
    image = tmp_path / "direct-root-owned.img"
    shutil.copy(rootfs_image, image)
    os.chmod(image, 0o644)
    key = unique_key("hw")
    before = snapshot(key)
    res = _deploy(agent, tmp_path, key, _scenario(
        key, f'<vm name="u" type="uml"><filesystem type="direct">{image}</filesystem>'
             '<if id="1" net="N"/></vm>'))
    assert res.rc == 1
    assert f"{image} is not writable by the scenario's uid {scenario_uid(key)}" in \
        res.result["message"]
    assert snapshot(key) == before
