"""Shared data of the provider tests (a module name no other test folder uses)."""

from __future__ import annotations

from ediv.cluster import Host
from ediv.provider.schema import EDIV_NAMESPACE

USERS = {"reader": ("rita", "r-pass"), "operator": ("otto", "o-pass"), "admin": ("ada", "a-pass")}
HOSTS = [
    Host("host1", mem=4096, cpu=100, max_vhost=20, address="198.18.0.11", load=0.25),
    Host("host2", mem=2048, cpu=50, max_vhost=10, address="198.18.0.12", vm_type="container"),
]


def connect(server, role: str, ca_file: str, namespace: str = EDIV_NAMESPACE):
    import pywbem

    name, password = USERS[role]
    return pywbem.WBEMConnection(server.url, (name, password), default_namespace=namespace,
                                 ca_certs=ca_file, timeout=20)
