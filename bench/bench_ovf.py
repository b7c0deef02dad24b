"""Benchmark ``ediv.ovf``: read the whole OVF corpus; verify a 1 GiB disk inside an OVA;
translate a 50-VM collection (descriptor -> VNUML and CIM; and a full import with its disk);
and, in one run on a raw-disk OVA (2 GiB by default), ``openssl dgst -sha256`` beside
``ediv ovf inspect`` and ``ediv ovf convert`` (wall-clock throughputs, their ratios to
openssl's, peak RSS of each process, and how sparse the converted image is).

Run: ``.venv/bin/python bench/bench_ovf.py [--size-mib N] [--corpus DIR] [--vms N]
[--throughput-mib N] [--repeat N] [--only-throughput]``. Prints figures; asserts nothing.
Packages are built in temporary folders that are removed afterwards, also on errors or Ctrl-C.
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import sys
import tarfile
import tempfile
import time
import tracemalloc
from pathlib import Path

from ediv.errors import EdivError
from ediv.ovf.inspect import inspect_package

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CORPUS = REPO.parent / "shared" / "corpus" / "ovf"
SUFFIXES = (".ovf", ".ova", ".xml", ".ovd", ".expected")
BLOCK = 512


def bench_corpus(corpus: Path) -> None:
    files = sorted(p for p in corpus.rglob("*") if p.is_file() and p.suffix in SUFFIXES)
    verdicts: collections.Counter[str] = collections.Counter()
    start = time.perf_counter()
    for path in files:
        try:
            result = inspect_package(path)
            verdicts["ok with warnings" if result.warnings else "ok"] += 1
        except EdivError:
            verdicts["rejected"] += 1
    elapsed = time.perf_counter() - start
    print(f"corpus: {len(files)} files in {elapsed:.2f} s "
          f"({elapsed / max(len(files), 1) * 1000:.2f} ms/file); "
          + ", ".join(f"{k} {v}" for k, v in sorted(verdicts.items())))


def _member_header(name: str, size: int) -> bytes:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o644
    return info.tobuf(format=tarfile.USTAR_FORMAT)


def build_sparse_ova(folder: Path, size: int) -> Path:
    """OVA with descriptor, manifest and a ``size``-byte all-zero disk stored as a hole."""
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))  # the package factory lives with the tests
    from tests.ovf_factory import descriptor

    ovf = descriptor(disk_href="big-disk1.img", disk_size=size).encode()
    zero, block = hashlib.sha256(), bytes(1 << 20)
    remaining = size
    while remaining:
        n = min(remaining, len(block))
        zero.update(block[:n])
        remaining -= n
    mf = (f"SHA256(big.ovf)= {hashlib.sha256(ovf).hexdigest()}\n"
          f"SHA256(big-disk1.img)= {zero.hexdigest()}\n").encode()
    path = folder / "big.ova"
    with path.open("wb") as out:
        for name, data in (("big.ovf", ovf), ("big.mf", mf)):
            out.write(_member_header(name, len(data)))
            out.write(data + bytes(-len(data) % BLOCK))
        out.write(_member_header("big-disk1.img", size))
        out.seek(size + (-size % BLOCK), 1)  # the disk's data: a hole, read back as zeros
        out.write(bytes(2 * BLOCK))  # end-of-archive marker
    return path


def bench_large_disk(size_mib: int) -> None:
    size = size_mib << 20
    with tempfile.TemporaryDirectory(prefix="ediv-bench-ovf-") as tmp:
        path = build_sparse_ova(Path(tmp), size)
        tracemalloc.start()
        start = time.perf_counter()
        result = inspect_package(path)
        elapsed = time.perf_counter() - start
        _current, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    print(f"verify {size_mib} MiB disk in an OVA: manifest {result.manifest.status}, "
          f"{elapsed:.2f} s, {size_mib / elapsed:.0f} MiB/s, "
          f"peak traced memory {peak / 2**20:.2f} MiB")


def collection_scenario(n_vms: int, image: Path | None):
    """A scenario of ``n_vms`` VMs on 10 nets, two interfaces each, sharing ``image``."""
    from ediv.scenario.model import VM, Filesystem, Global, Interface, Net, Scenario

    nets = [Net(name=f"Net{k}") for k in range(10)]
    vms = [VM(name=f"vm{i}", type="uml", mem="64M",
              filesystem=Filesystem(str(image)) if image else None,
              interfaces=[Interface(1, f"Net{i % 10}"), Interface(2, f"Net{(i + 1) % 10}")])
           for i in range(n_vms)]
    return Scenario(global_=Global(simulation_name="bench"), nets=nets, vms=vms)


def _measure(work) -> tuple[object, float, float]:
    tracemalloc.start()
    start = time.perf_counter()
    result = work()
    elapsed = time.perf_counter() - start
    _current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return result, elapsed, peak / 2**20


def bench_collection(n_vms: int) -> None:
    from ediv.ovf.cim import to_cim
    from ediv.ovf.export import build_descriptor
    from ediv.ovf.reader import read_descriptor
    from ediv.ovf.translate import to_scenario, translate_systems
    from ediv.scenario import to_xml

    descriptor = build_descriptor(collection_scenario(n_vms, None), {}, "vmdk")

    def translate():
        env = read_descriptor(descriptor)
        vms = [vm for _vs, vm in translate_systems(env)]
        xml = to_xml(to_scenario(vms, "bench"))
        cim = [to_cim(env, vm.name) for vm in vms]
        return vms, xml, cim

    (_vms, xml, cim), elapsed, peak = _measure(translate)
    print(f"translate a {n_vms}-VM collection ({len(descriptor) / 1024:.0f} KiB descriptor -> "
          f"{len(xml) / 1024:.0f} KiB VNUML + {sum(1 + len(r) for _v, r in cim)} CIM "
          f"instances): {elapsed * 1000:.1f} ms, peak traced memory {peak:.2f} MiB")


def bench_collection_import(n_vms: int) -> None:
    """Export a scenario with a 64 MiB image shared by all VMs, then import it (verify,
    convert the VMDK back to raw, write one ovf-env.xml per VM if it has properties)."""
    import shutil
    import subprocess

    from ediv.ovf.export import export_scenario
    from ediv.ovf.importer import materialize, open_appliance

    if shutil.which("qemu-img") is None or shutil.which("mkfs.ext2") is None:
        print("import: skipped (qemu-img or mkfs.ext2 missing)")
        return
    with tempfile.TemporaryDirectory(prefix="ediv-bench-ovf-") as tmp:
        folder = Path(tmp)
        image = folder / "rootfs.img"
        subprocess.run(["mkfs.ext2", "-q", "-F", str(image), "64M"], check=True,
                       capture_output=True)
        ova = folder / "bench.ova"
        _r, export_s, export_peak = _measure(
            lambda: export_scenario(collection_scenario(n_vms, image), ova))

        def do_import():
            appliance = open_appliance(ova)
            materialize(appliance, folder / "out")
            return appliance

        appliance, import_s, import_peak = _measure(do_import)
    print(f"export {n_vms} VMs + 64 MiB image: {export_s:.2f} s (peak {export_peak:.2f} MiB); "
          f"import back ({len(appliance.vms)} VMs, {len(appliance.files)} files): "
          f"{import_s:.2f} s (peak traced memory {import_peak:.2f} MiB)")


# -- one run: openssl dgst, ediv ovf inspect, ediv ovf convert on the same package ------------
DATA_EVERY = 4  # one MiB of data in every 4: a raw disk image that is 3/4 zeros


def build_raw_ova(folder: Path, size: int) -> Path:
    """An OVA (written in full, not sparse) with a ``size``-byte raw disk: one MiB of
    pseudo-random data in every ``DATA_EVERY``, zeros elsewhere; manifest SHA256."""
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from tests.ovf_factory import appliance_descriptor

    data = hashlib.sha256(b"ediv").digest() * (1 << 15)  # 1 MiB, not compressible by zeros
    zeros = bytes(1 << 20)
    ovf = appliance_descriptor(disk_href="big-disk1.img", disk_size=size, fmt="raw",
                               capacity_bytes=size).encode()
    disk = folder / "disk.img"
    digest = hashlib.sha256()
    with disk.open("wb") as out:
        for n in range(size >> 20):
            block = data if n % DATA_EVERY == 0 else zeros
            digest.update(block)
            out.write(block)
    mf = (f"SHA256(big.ovf)= {hashlib.sha256(ovf).hexdigest()}\n"
          f"SHA256(big-disk1.img)= {digest.hexdigest()}\n").encode()
    path = folder / "big.ova"
    with path.open("wb") as out:
        for name, blob in (("big.ovf", ovf), ("big.mf", mf)):
            out.write(_member_header(name, len(blob)))
            out.write(blob + bytes(-len(blob) % BLOCK))
        out.write(_member_header("big-disk1.img", size))
        with disk.open("rb") as f:
            while block := f.read(1 << 22):
                out.write(block)
        out.write(bytes(-size % BLOCK) + bytes(2 * BLOCK))
    disk.unlink()
    return path


def _timed(argv: list[str], cwd: Path) -> tuple[float, float, float, int]:
    """(wall seconds, CPU seconds, peak RSS MiB, exit status) of one process and its
    children. RSS and CPU come from /usr/bin/time when present (a fork of this Python would
    count its pages), else from wait4."""
    import os
    import shutil
    import subprocess

    gnu_time = shutil.which("time", path="/usr/bin")
    report = cwd / ".rss"
    if gnu_time:
        argv = [gnu_time, "-f", "%M %U %S", "-o", str(report), *argv]
    start = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _pid, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    rss_kib, cpu = usage.ru_maxrss, usage.ru_utime + usage.ru_stime
    if gnu_time and report.exists():
        fields = report.read_text().split()[-3:]
        if len(fields) == 3:
            rss_kib, cpu = int(fields[0]), float(fields[1]) + float(fields[2])
        report.unlink()
    if proc.returncode != 0:
        print(f"  {' '.join(argv[-4:])}... exited {proc.returncode}: "
              f"{proc.stderr.read().decode(errors='replace').strip()[-300:]}")
    proc.stderr.close()
    return elapsed, cpu, rss_kib / 1024, proc.returncode


def bench_throughput(size_mib: int, repeat: int = 3) -> None:
    import os
    import shutil

    if shutil.which("openssl") is None:
        print("throughput: skipped (openssl missing)")
        return
    script = Path(sys.executable).parent / "ediv"
    ediv = [str(script)] if script.exists() else [sys.executable, "-m", "ediv.client.cli"]
    size = size_mib << 20
    with tempfile.TemporaryDirectory(prefix="ediv-bench-ovf-") as tmp:
        folder = Path(tmp)
        ova = build_raw_ova(folder, size)
        total = ova.stat().st_size
        commands = {
            "openssl dgst -sha256": ["openssl", "dgst", "-sha256", str(ova)],
            "ediv ovf inspect": [*ediv, "ovf", "inspect", str(ova)],
            "ediv ovf convert": [*ediv, "ovf", "convert", str(ova), "-o",
                                 str(folder / "out" / "lab.xml")]}
        seen: dict[str, list[tuple[float, float, float, int]]] = {k: [] for k in commands}
        for _round in range(repeat):  # interleaved: each command sees the same load
            for what, argv in commands.items():
                shutil.rmtree(folder / "out", ignore_errors=True)
                (folder / "out").mkdir()
                seen[what].append(_timed(argv, folder))
        # fastest wall and least CPU (the least disturbed runs), largest RSS, worst status
        runs = {k: (min(r[0] for r in v), min(r[1] for r in v), max(r[2] for r in v),
                    max(r[3] for r in v)) for k, v in seen.items()}
        image = folder / "out" / "router1.img"
        allocated = image.stat().st_blocks * 512 if image.exists() else 0
        base = total / runs["openssl dgst -sha256"][0] / 2**20
        base_cpu = runs["openssl dgst -sha256"][1]
        print(f"throughput on a {size_mib} MiB raw-disk OVA ({total / 2**20:.0f} MiB, "
              f"1 MiB of data in every {DATA_EVERY}), {os.cpu_count()} cores, best of "
              f"{repeat} (page cache warm; process wall clock, start-up included):")
        for what, (elapsed, cpu, rss, code) in runs.items():
            rate = total / elapsed / 2**20
            print(f"  {what:22} {elapsed:6.2f} s {rate:6.0f} MiB/s {rate / base:5.2f}x openssl"
                  f" | CPU {cpu:5.2f} s ({base_cpu / cpu:4.2f}x) | peak RSS {rss:5.1f} MiB"
                  + ("" if code == 0 else f"  (exit {code})"))
        print(f"  targets: inspect >= 0.80x, convert >= 0.50x; converted image "
              f"{image.stat().st_size / 2**20 if image.exists() else 0:.0f} MiB apparent, "
              f"{allocated / 2**20:.0f} MiB allocated")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--vms", type=int, default=50)
    parser.add_argument("--throughput-mib", type=int, default=2048)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only-throughput", action="store_true")
    args = parser.parse_args()
    bench_throughput(args.throughput_mib, args.repeat)
    if args.only_throughput:
        return
    if args.corpus.is_dir():
        bench_corpus(args.corpus)
    else:
        print(f"corpus: skipped ({args.corpus} not found)")
    bench_large_disk(args.size_mib)
    bench_collection(args.vms)
    bench_collection_import(args.vms)


if __name__ == "__main__":
    main()
