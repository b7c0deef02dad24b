"""Time parse + XSD + model + checks on a generated scenario (default 10,000 VMs / 2,000 nets).

Usage: python bench/bench_scenario_load.py [VMS] [NETS]
Prints one line per stage, in seconds.
"""

from __future__ import annotations

import sys
import time


def generate(vms: int, nets: int) -> bytes:
    """A valid VNUML 1.8 scenario: nets Net0..; VM i on nets i%nets and (i+1)%nets."""
    out = [
        '<?xml version="1.0" encoding="UTF-8"?>\n<vnuml>\n<global><version>1.8</version>'
        "<simulation_name>big</simulation_name><automac/>"
        '<vm_mgmt type="private" network="10.0.0.0" mask="8" offset="0"><host_mapping/></vm_mgmt>'
        '<vm_defaults exec_mode="mconsole"><filesystem type="cow">/fs/root</filesystem>'
        "<mem>64M</mem><kernel>/k/linux</kernel></vm_defaults></global>\n"
    ]
    out += [f'<net name="Net{n}" mode="virtual_bridge"/>\n' for n in range(nets)]
    for i in range(vms):
        a, b = i % nets, (i + 1) % nets
        host = i // nets + 1
        net_a, net_b = f"10.{a // 256}.{a % 256}", f"10.{b // 256}.{b % 256}"
        out.append(
            f'<vm name="vm{i}">'
            f'<if id="1" net="Net{a}"><ipv4 mask="255.255.0.0">{net_a}.{host}</ipv4></if>'
            f'<if id="2" net="Net{b}"><ipv4>{net_b}.{host + 100}/16</ipv4></if>'
            f'<route type="ipv4" gw="{net_a}.254">default</route>'
            '<forwarding type="ip"/>'
            f'<exec seq="start" type="verbatim">echo {i}</exec>'
            "</vm>\n"
        )
    out.append("</vnuml>\n")
    return "".join(out).encode()


def main() -> None:
    from ediv import xmlsafe
    from ediv.scenario import checks, parser, schema

    vms = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    nets = int(sys.argv[2]) if len(sys.argv) > 2 else 2_000
    data = generate(vms, nets)
    print(f"document: {vms} VMs, {nets} nets, {len(data) / 1e6:.1f} MB")

    t0 = time.perf_counter()
    schema.compiled()
    t1 = time.perf_counter()
    print(f"compile XSD (once per process): {t1 - t0:.3f} s")

    t0 = time.perf_counter()
    tree = xmlsafe.parse_bytes(data, "big.xml")
    t1 = time.perf_counter()
    xsd = schema.validate(tree, "big.xml")
    t2 = time.perf_counter()
    scenario, diags = parser.build(tree, "big.xml")
    t3 = time.perf_counter()
    found = checks.check(scenario, deployable=True)
    t4 = time.perf_counter()
    assert not xsd and not [d for d in diags + found if d.severity == "error"], (xsd, diags, found)
    print(f"lxml parse:   {t1 - t0:.3f} s")
    print(f"XSD validate: {t2 - t1:.3f} s")
    print(f"build model:  {t3 - t2:.3f} s")
    print(f"checks:       {t4 - t3:.3f} s")
    print(f"total:        {t4 - t0:.3f} s")
    t0 = time.perf_counter()
    full = schema.validate(tree, "big.xml", fast=False)
    t1 = time.perf_counter()
    assert not full, full
    print(f"XSD validate with xmlschema alone (the path invalid documents take): {t1 - t0:.3f} s")


if __name__ == "__main__":
    main()
