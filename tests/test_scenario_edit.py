"""ediv.scenario.edit on the scenario model, and ediv.service.edit on a real state store,
without a server: the edits the WBEM resource methods translate to, their refusals as ediv
errors, and the all-or-nothing storing of an edited defined scenario."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import pytest

from ediv import state as st
from ediv.errors import AlreadyExists, InputError, NotFound, WrongState
from ediv.scenario import edit, load_string
from ediv.scenario.model import Address, Filesystem, Interface
from ediv.service.edit import edit_defined

REPO = Path(__file__).resolve().parents[1]
SIMPLE6 = (REPO / "examples" / "simple6.xml").read_text()


@pytest.fixture
def scenario():
    return load_string(SIMPLE6, "simple6.xml", str(REPO / "examples"), deployable=True)[0]


@pytest.fixture
def store(tmp_path):
    s = st.StateStore(tmp_path / "state.db")
    s.create_scenario("simple6", SIMPLE6, basedir=str(REPO / "examples"), algorithm=None)
    yield s
    s.close()


class Claims:
    """A claim that records who took it and refuses a second holder (like the real one)."""

    def __init__(self):
        self.held: set[str] = set()
        self.taken: list[tuple[str, str]] = []

    @contextmanager
    def __call__(self, name: str, what: str):
        assert name not in self.held, "claimed twice"
        self.held.add(name)
        self.taken.append((name, what))
        try:
            yield
        finally:
            self.held.discard(name)


def test_find_vm_and_interface(scenario):
    assert edit.find_vm(scenario, "r1").name == "r1"
    with pytest.raises(NotFound, match="scenario 'simple6' has no VM 'ghost'"):
        edit.find_vm(scenario, "ghost")
    r1 = edit.find_vm(scenario, "r1")
    assert edit.find_interface(r1, 2).net == "Link"
    with pytest.raises(NotFound, match="no interface 7"):
        edit.find_interface(r1, 7)


def test_add_resources_once(scenario):
    h1 = edit.find_vm(scenario, "h1")
    edit.add_interface(h1, Interface(id=2, net="Net1"))
    assert [i.id for i in h1.interfaces] == [1, 2]
    with pytest.raises(InputError, match="has an interface 2 already"):
        edit.add_interface(h1, Interface(id=2, net="Net0"))
    edit.add_memory(h1, "256M")
    with pytest.raises(InputError, match=r"already has its memory \(256M\)"):
        edit.add_memory(h1, "512M")
    assert h1.mem == "256M"
    edit.add_filesystem(h1, Filesystem("/images/a.img", "cow"))
    with pytest.raises(InputError, match="already has its filesystem"):
        edit.add_filesystem(h1, Filesystem("/images/b.img", "cow"))


def test_change_and_remove(scenario):
    r1 = edit.find_vm(scenario, "r1")
    a, b = r1.interfaces
    # a swap is two changes; the scenario is valid again only after both
    edit.change_interface(a, if_id=2)
    edit.change_interface(b, if_id=1, mac="02:00:00:00:00:09",
                          addresses=[Address(4, "198.18.3.1/30")])
    assert (a.id, a.net, b.id, b.net, b.mac) == (2, "Net0", 1, "Link", "02:00:00:00:00:09")
    with pytest.raises(InputError, match="needs a net"):
        edit.change_interface(a, net="")
    edit.remove_interface(r1, a)
    assert [i.net for i in r1.interfaces] == ["Link"]
    edit.set_memory(r1, "64M")
    edit.remove_memory(r1)
    assert r1.mem is None
    with pytest.raises(InputError, match="comes from the <vm_defaults>"):
        edit.remove_filesystem(r1, "simple6")
    edit.set_filesystem(r1, edit.filesystem("/images/r1.img", None))
    assert r1.filesystem == Filesystem("/images/r1.img", "cow")
    edit.remove_filesystem(r1, "simple6")
    assert r1.filesystem is None
    with pytest.raises(InputError, match="'qcow2' is not one of"):
        edit.filesystem("/images/x.img", "qcow2")
    assert edit.filesystem(None, "direct") is None


def test_type_kernel_and_rename(scenario):
    h1 = edit.find_vm(scenario, "h1")
    edit.set_type(h1, "container")
    assert h1.type == "container"
    with pytest.raises(InputError, match="'kvm' is not supported"):
        edit.set_type(h1, "kvm")
    edit.set_kernel(h1, "/boot/linux")
    edit.set_kernel(h1, "/boot/linux2")
    assert h1.kernel.path == "/boot/linux2"
    edit.set_kernel(h1, "")
    assert h1.kernel is None
    with pytest.raises(AlreadyExists, match="already has a VM named 'h2'"):
        edit.rename_vm(scenario, h1, "h2")
    with pytest.raises(InputError, match="not usable"):
        edit.rename_vm(scenario, h1, "../etc")
    with pytest.raises(InputError, match="restrictions of scenario 'simple6' name VM 'h1'"):
        edit.rename_vm(scenario, h1, "web", restricted={"h1"})
    edit.rename_vm(scenario, h1, "web")
    assert scenario.vm("web") is h1 and scenario.vm("h1") is None


def test_restricted_vms():
    text = ('<deployment_restrictions><vm_deploy_at vm="h1" host="a"/>'
            '<affinity><vm>r1</vm><vm>r2</vm></affinity></deployment_restrictions>')
    assert edit.restricted_vms(text) >= {"h1", "r1", "r2"}
    assert edit.restricted_vms(None) == set()
    with pytest.raises(InputError, match="the stored Restrictions has errors"):
        edit.restricted_vms("<deployment_restrictions><bogus/>")


def test_edit_defined_stores_a_valid_result(store):
    claims = Claims()

    def change(s):
        edit.add_interface(edit.find_vm(s, "h2"), Interface(id=2, net="Net1"))
        return "done"

    assert edit_defined(store, "simple6", change, claims) == "done"
    assert claims.taken == [("simple6", "modify")] and not claims.held
    spec = store.scenario("simple6").spec
    again = load_string(spec, "s.xml", str(REPO / "examples"))[0]
    assert [i.net for i in again.vm("h2").interfaces] == ["Net0", "Net1"]


def test_edit_defined_is_all_or_nothing(store):
    before = store.scenario("simple6").spec
    claims = Claims()

    def third_end(s):  # a third end on the ppp net Link: the scenario checks refuse it
        edit.add_memory(edit.find_vm(s, "h2"), "128M")
        edit.add_interface(edit.find_vm(s, "h2"), Interface(id=2, net="Link"))

    with pytest.raises(InputError) as info:
        edit_defined(store, "simple6", third_end, claims)
    assert "the scenario with this VM has errors:" in str(info.value)
    assert any("ppp net 'Link' has 3 ends" in d.message for d in info.value.diagnostics)

    def fails(s):
        edit.set_memory(edit.find_vm(s, "h2"), "128M")
        edit.find_vm(s, "ghost")

    with pytest.raises(NotFound):
        edit_defined(store, "simple6", fails, claims)
    assert store.scenario("simple6").spec == before and not claims.held


def test_edit_defined_needs_a_defined_scenario(store):
    claims = Claims()
    with pytest.raises(NotFound, match="no scenario named 'other'"):
        edit_defined(store, "other", lambda s: None, claims)
    store.set_scenario_state("simple6", st.DEPLOYED)
    with pytest.raises(WrongState, match="scenario 'simple6' is deployed") as info:
        edit_defined(store, "simple6", lambda s: None, claims)
    assert info.value.state == st.DEPLOYED
    assert claims.taken == []  # refused before the claim: a deploy holds it for its job
