"""OVF -> VNUML VM translation."""

from __future__ import annotations

import pytest

from ediv.ovf.reader import read_descriptor
from ediv.ovf.translate import to_vms, vm_name
from tests import ovf_factory as f


def test_router_translates_to_uml_vm():
    env = read_descriptor(f.descriptor(mem_mb=512, networks=("mgmt", "lan")).encode())
    (vm,) = to_vms(env, {"lan": "Net0"}, appliance="router.ova")
    assert (vm.name, vm.type, vm.mem, vm.appliance) == ("router1", "uml", "512M", "router.ova")
    assert [(i.id, i.net) for i in vm.interfaces] == [(1, "mgmt"), (2, "Net0")]


def test_nic_without_network_left_out_with_warning():
    text = f.descriptor(networks=("lan",)).replace("<rasd:Connection>lan</rasd:Connection>", "")
    warnings: list[str] = []
    (vm,) = to_vms(read_descriptor(text.encode()), warnings=warnings)
    assert vm.interfaces == []
    assert any("has no network" in w for w in warnings)


@pytest.mark.parametrize("raw, name", [("router1", "router1"), ("My Router.v2", "My_Router_v2"),
                                       ("42", "vm_42"), ("", "vm")])
def test_vm_names_are_vnuml_safe(raw, name):
    from ediv.ovf.envelope import VirtualSystem

    assert vm_name(VirtualSystem(id=raw or None)) == name


def test_corpus_collection_gives_unique_vms(corpus):
    path = corpus / "ovf/govmomi/external/2011OVFs/StudioVappEulaOvf/StudioVappEulaOvf.ovf"
    if not path.is_file():
        pytest.skip(f"corpus file {path} not found")
    vms = to_vms(read_descriptor(path.read_bytes(), str(path)))
    assert len(vms) == 2
    assert len({vm.name for vm in vms}) == 2
    assert all(vm.mem and vm.mem.endswith("M") for vm in vms)
