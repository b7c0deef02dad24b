"""EDIV restriction files: parsing, resolution order, conflicts, names."""

from __future__ import annotations

from pathlib import Path

import pytest

from ediv.cluster import Host
from ediv.errors import InputError, PlanError
from ediv.restrictions import (
    Affinity,
    AntiAffinity,
    NetDeployAt,
    NetDeployTogether,
    VmDeployAt,
    load_restrictions,
    match_host,
    parse_restrictions,
    resolve,
)
from ediv.scenario.model import VM, Global, Interface, Net, Scenario

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"
EDIV_DOCS = CORPUS / "vnuml" / "davidfdezc-vnx" / "vnx-ediv" / "ediv-0.9.4" / "doc-extracted"


def scenario(spec: dict[str, list[str]]) -> Scenario:
    """VMs in the given order, each attached to the listed nets."""
    nets = list(dict.fromkeys(n for ns in spec.values() for n in ns))
    vms = [
        VM(name, interfaces=[Interface(i, n) for i, n in enumerate(ns, 1)])
        for name, ns in spec.items()
    ]
    return Scenario(global_=Global(simulation_name="s"), nets=[Net(n) for n in nets], vms=vms)


def rules(body: str, source: str = "r.xml") -> bytes:
    return f"<deployment_restrictions>\n{body}\n</deployment_restrictions>\n".encode()


def hosts(*names: str, max_vhost: int = 0) -> list[Host]:
    return [Host(n, max_vhost=max_vhost) for n in names]


BGP = scenario(
    {
        "R1": ["AS1-AS2", "AS1-AS4"],
        "R2": ["AS1-AS2", "AS2-AS3"],
        "R3": ["AS2-AS3", "AS3-AS4"],
        "R4": ["AS3-AS4", "AS1-AS4"],
        "R5": ["AS2-AS3"],
        "R6": ["AS1-AS2"],
    }
)


# --- parsing ---------------------------------------------------------------------------------


def test_parse_every_rule_kind_with_lines():
    r = parse_restrictions(
        rules(
            '<net_deploy_at net="A" host="h1"/>\n'
            '<vm_deploy_at vm="x" host="h2"/>\n'
            "<affinity><vm>x</vm><vm>y</vm></affinity>\n"
            "<net_deploy_together><net>A</net><net>B</net></net_deploy_together>\n"
            "<antiaffinity>\n  <vm>x</vm>\n  <vm>z</vm>\n</antiaffinity>"
        ),
        "r.xml",
    )
    assert r.net_deploy_at == [NetDeployAt("r.xml", 2, "A", "h1")]
    assert r.vm_deploy_at == [VmDeployAt("r.xml", 3, "x", "h2")]
    assert r.affinity == [Affinity("r.xml", 4, ("x", "y"))]
    assert r.net_deploy_together == [NetDeployTogether("r.xml", 5, ("A", "B"))]
    assert r.antiaffinity == [AntiAffinity("r.xml", 6, ("x", "z"))]
    assert str(r.vm_deploy_at[0]) == "r.xml:3 (vm_deploy_at vm=x host=h2)"
    # processing order is by kind, whatever the file order
    assert [type(x).__name__ for x in r.rules()] == [
        "NetDeployAt", "VmDeployAt", "Affinity", "NetDeployTogether", "AntiAffinity"
    ]


def test_parse_reports_every_structural_error_with_its_line():
    data = rules(
        '<vm_deploy_at vm="x"/>\n'  # line 2: no host
        "<affinity><vm>x</vm></affinity>\n"  # line 3: one VM only
        "<antiaffinity><vm>x</vm><net>y</net></antiaffinity>\n"  # line 4: wrong child
        '<vm_deploy_at_typo vm="x" host="h"/>\n'  # line 5: unknown rule
        "<affinity><vm> </vm><vm>y</vm></affinity>"  # line 6: empty name
    )
    with pytest.raises(InputError) as exc:
        parse_restrictions(data, "bad.xml")
    assert [d.line for d in exc.value.diagnostics] == [2, 3, 4, 5, 6]
    assert all(d.source == "bad.xml" for d in exc.value.diagnostics)
    assert "host=" in str(exc.value) and "vm_deploy_at_typo" in str(exc.value)


def test_parse_rejects_wrong_root_and_malformed_xml():
    with pytest.raises(InputError, match=r"r.xml:1: expected <deployment_restrictions>"):
        parse_restrictions(b"<restrictions/>", "r.xml")
    with pytest.raises(InputError, match=r"r.xml:2: malformed XML"):
        parse_restrictions(b"<deployment_restrictions>\n<affinity></deployment_restrictions>",
                           "r.xml")


def test_parse_refuses_external_entities(tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("h1")
    data = (
        f'<!DOCTYPE d [<!ENTITY x SYSTEM "file://{secret}">]>'
        '<deployment_restrictions><vm_deploy_at vm="a" host="&x;"/></deployment_restrictions>'
    ).encode()
    with pytest.raises(InputError):
        parse_restrictions(data, "r.xml")


def test_duplicate_member_is_a_warning_not_a_second_member():
    r = parse_restrictions(rules("<affinity><vm>a</vm><vm>b</vm><vm>a</vm></affinity>"), "r.xml")
    assert r.affinity[0].vms == ("a", "b")
    assert [w.severity for w in r.warnings] == ["warning"]


def test_load_restrictions_missing_file(tmp_path):
    with pytest.raises(InputError, match="cannot read"):
        load_restrictions(tmp_path / "nope.xml")


def test_real_ediv_restriction_files_parse(corpus):
    manual = load_restrictions(EDIV_DOCS / "restriction_bgp_usermanual.xml")
    assert [(r.net, r.host, r.line) for r in manual.net_deploy_at] == [
        ("AS1-AS4", "kofy.dit.upm.es", 3)
    ]
    assert [(r.vm, r.host) for r in manual.vm_deploy_at] == [("R2", "zermat.dit.upm.es")]
    assert [r.vms for r in manual.antiaffinity] == [("R6", "R1"), ("R2", "R5")]
    assert [r.vms for r in manual.affinity] == [("R3", "R2")]
    tutorial = load_restrictions(EDIV_DOCS / "restriction_bgp_tutorial.xml")
    assert [r.vms for r in tutorial.antiaffinity] == [("R2", "R5")]


def test_real_ediv_file_resolves_on_short_host_names(corpus):
    r = load_restrictions(EDIV_DOCS / "restriction_bgp_usermanual.xml")
    placed = resolve(r, BGP, hosts("zermat", "kofy", "cuco"))
    # net_deploy_at AS1-AS4@kofy.dit.upm.es: R1, R4 -> kofy; vm_deploy_at R2 -> zermat;
    # affinity {R3,R2}: R3 follows R2; antiaffinity {R6,R1}: R6 not on kofy, fewest VMs ->
    # cuco (0); antiaffinity {R2,R5}: R5 not on zermat, fewest -> cuco (1) before kofy (2).
    assert placed == {"R1": "kofy", "R2": "zermat", "R3": "zermat", "R4": "kofy", "R5": "cuco",
                      "R6": "cuco"}


# --- resolving ---------------------------------------------------------------------------------


def test_antiaffinity_vs_net_deploy_at_names_both_rules():
    r = parse_restrictions(
        rules(
            '<net_deploy_at net="AS1-AS4" host="kofy.dit.upm.es" />\n'
            "<antiaffinity><vm>R4</vm><vm>R1</vm></antiaffinity>"
        ),
        "r.xml",
    )
    with pytest.raises(PlanError) as exc:
        resolve(r, BGP, hosts("zermat", "kofy", "cuco"))
    message = str(exc.value)
    assert message.startswith("restrictions cannot all hold:")
    assert (
        "r.xml:3 (antiaffinity {R4, R1}) conflicts with r.xml:2 (net_deploy_at net=AS1-AS4 "
        "host=kofy.dit.upm.es): R4 and R1 are both placed on kofy" in message
    )


def test_tutorial_file_resolves():
    r = parse_restrictions(
        rules(
            '<net_deploy_at net="AS1-AS4" host="kofy.dit.upm.es" />\n'
            '<vm_deploy_at vm="R2" host="zermat.dit.upm.es" />\n'
            "<antiaffinity><vm>R2</vm><vm>R5</vm></antiaffinity>\n"
            "<affinity><vm>R3</vm><vm>R2</vm></affinity>"
        ),
        "t.xml",
    )
    placed = resolve(r, BGP, hosts("zermat", "kofy", "cuco"))
    # R1, R4 on AS1-AS4 -> kofy; R2 -> zermat; R3 follows R2; R5 anywhere but zermat:
    # fewest VMs first -> cuco (0 VMs) before kofy (2). R6 is left to the algorithm.
    assert placed == {"R1": "kofy", "R2": "zermat", "R3": "zermat", "R4": "kofy", "R5": "cuco"}
    assert list(placed) == ["R1", "R2", "R3", "R4", "R5"]  # VM order


def test_vm_deploy_at_vs_net_deploy_at_names_both_rules_with_lines():
    r = parse_restrictions(
        rules('<vm_deploy_at vm="R2" host="A"/>\n<net_deploy_at net="AS2-AS3" host="B"/>'), "r.xml"
    )
    with pytest.raises(PlanError) as exc:
        resolve(r, BGP, hosts("A", "B"))
    # net_deploy_at is processed first, so vm_deploy_at is the rule that clashes with it
    assert (
        "r.xml:2 (vm_deploy_at vm=R2 host=A) conflicts with r.xml:3 (net_deploy_at net=AS2-AS3 "
        "host=B): R2 cannot run on both B and A" in str(exc.value)
    )


def test_affinity_vs_antiaffinity_names_both_rules():
    r = parse_restrictions(
        rules(
            "<affinity><vm>R3</vm><vm>R2</vm></affinity>\n"
            "<antiaffinity><vm>R2</vm><vm>R3</vm></antiaffinity>"
        ),
        "r.xml",
    )
    with pytest.raises(PlanError) as exc:
        resolve(r, BGP, hosts("A", "B"))
    msg = str(exc.value)
    assert "r.xml:3 (antiaffinity {R2, R3}) conflicts with r.xml:2 (affinity {R3, R2})" in msg


def test_affinity_chain_vs_antiaffinity_names_the_chain():
    r = parse_restrictions(
        rules(
            "<affinity><vm>R1</vm><vm>R2</vm></affinity>\n"
            "<affinity><vm>R5</vm><vm>R6</vm></affinity>\n"
            "<affinity><vm>R2</vm><vm>R3</vm></affinity>\n"
            "<antiaffinity><vm>R1</vm><vm>R3</vm></antiaffinity>"
        ),
        "r.xml",
    )
    with pytest.raises(PlanError) as exc:
        resolve(r, BGP, hosts("A", "B"))
    msg = str(exc.value)
    assert "r.xml:5 (antiaffinity {R1, R3}) conflicts with r.xml:2 (affinity {R1, R2}) and " \
        "r.xml:4 (affinity {R2, R3})" in msg
    assert "r.xml:3" not in msg  # the unrelated affinity is not blamed


def test_every_conflict_reported_at_once():
    r = parse_restrictions(
        rules(
            '<vm_deploy_at vm="R1" host="A"/>\n'
            '<vm_deploy_at vm="R1" host="B"/>\n'
            '<vm_deploy_at vm="R5" host="A"/>\n'
            '<vm_deploy_at vm="R5" host="B"/>\n'
            "<antiaffinity><vm>R1</vm><vm>R2</vm><vm>R3</vm></antiaffinity>"
        ),
        "r.xml",
    )
    with pytest.raises(PlanError) as exc:
        resolve(r, BGP, hosts("A", "B"))
    lines = str(exc.value).splitlines()[1:]
    assert len(lines) == 3
    assert "r.xml:3" in lines[0] and "r.xml:2" in lines[0]
    assert "r.xml:5" in lines[1] and "r.xml:4" in lines[1]
    assert "needs 3 different hosts, the cluster has 2" in lines[2]


def test_net_deploy_at_places_every_vm_of_the_net():
    r = parse_restrictions(rules('<net_deploy_at net="AS1-AS4" host="B"/>'), "r.xml")
    assert resolve(r, BGP, hosts("A", "B")) == {"R1": "B", "R4": "B"}


def test_same_host_from_two_rules_is_no_conflict():
    r = parse_restrictions(
        rules('<net_deploy_at net="AS1-AS4" host="B"/>\n<vm_deploy_at vm="R1" host="B"/>'), "r.xml"
    )
    assert resolve(r, BGP, hosts("A", "B"))["R1"] == "B"


def test_affinity_follows_the_placed_member():
    r = parse_restrictions(
        rules('<vm_deploy_at vm="R4" host="B"/>\n<affinity><vm>R1</vm><vm>R4</vm></affinity>'),
        "r.xml",
    )
    assert resolve(r, BGP, hosts("A", "B")) == {"R1": "B", "R4": "B"}


def test_unplaced_affinity_groups_go_to_the_least_used_host_in_rule_order():
    r = parse_restrictions(
        rules(
            '<vm_deploy_at vm="R6" host="A"/>\n'
            "<affinity><vm>R1</vm><vm>R2</vm></affinity>\n"
            "<affinity><vm>R3</vm><vm>R4</vm></affinity>"
        ),
        "r.xml",
    )
    # A has R6; first group -> B (0 VMs, vs A's 1); second group -> A (1) before B (2).
    placed = resolve(r, BGP, hosts("A", "B"))
    assert placed == {"R1": "B", "R2": "B", "R3": "A", "R4": "A", "R6": "A"}


def test_affinity_group_respects_max_vhost_and_antiaffinity():
    r = parse_restrictions(
        rules(
            '<vm_deploy_at vm="R6" host="A"/>\n'
            "<affinity><vm>R1</vm><vm>R2</vm><vm>R3</vm></affinity>\n"
            "<antiaffinity><vm>R1</vm><vm>R5</vm></antiaffinity>\n"
            '<vm_deploy_at vm="R5" host="B"/>'
        ),
        "r.xml",
    )
    # B is barred by antiaffinity (R5 there), A would exceed max_vhost 3 (R6 + 3): -> C
    placed = resolve(r, BGP, hosts("A", "B", "C", max_vhost=3))
    assert placed["R1"] == placed["R2"] == placed["R3"] == "C"


def test_affinity_cannot_follow_past_max_vhost():
    r = parse_restrictions(
        rules(
            '<vm_deploy_at vm="R1" host="A"/>\n'
            "<affinity><vm>R1</vm><vm>R2</vm><vm>R3</vm></affinity>"
        ),
        "r.xml",
    )
    with pytest.raises(PlanError) as exc:
        resolve(r, BGP, hosts("A", "B", max_vhost=2))
    assert (
        "r.xml:3 (affinity {R1, R2, R3}) conflicts with r.xml:2 (vm_deploy_at vm=R1 host=A)"
        in str(exc.value)
    )
    assert "max_vhost 2" in str(exc.value)


def test_affinity_with_members_fixed_apart_names_all_rules():
    r = parse_restrictions(
        rules(
            '<vm_deploy_at vm="R1" host="A"/>\n'
            '<vm_deploy_at vm="R2" host="B"/>\n'
            "<affinity><vm>R1</vm><vm>R2</vm></affinity>"
        ),
        "r.xml",
    )
    with pytest.raises(PlanError) as exc:
        resolve(r, BGP, hosts("A", "B"))
    msg = str(exc.value)
    assert "r.xml:4 (affinity {R1, R2}) conflicts with r.xml:2" in msg and "r.xml:3" in msg


def test_net_deploy_together_keeps_the_nets_whole():
    r = parse_restrictions(
        rules(
            '<vm_deploy_at vm="R5" host="B"/>\n'
            "<net_deploy_together><net>AS2-AS3</net></net_deploy_together>"
        ),
        "r.xml",
    )
    placed = resolve(r, BGP, hosts("A", "B"))
    assert {vm: placed[vm] for vm in ("R2", "R3", "R5")} == {"R2": "B", "R3": "B", "R5": "B"}


def test_net_deploy_together_after_affinity_in_processing_order():
    r = parse_restrictions(
        rules(
            "<net_deploy_together><net>AS1-AS4</net></net_deploy_together>\n"
            "<affinity><vm>R2</vm><vm>R5</vm></affinity>"
        ),
        "r.xml",
    )
    # the affinity (file line 3) is processed first and takes A; then the net's VMs take B
    placed = resolve(r, BGP, hosts("A", "B"))
    assert placed["R2"] == placed["R5"] == "A"
    assert placed["R1"] == placed["R4"] == "B"


def test_antiaffinity_places_members_on_distinct_least_used_hosts():
    r = parse_restrictions(
        rules(
            '<net_deploy_at net="AS1-AS4" host="A"/>\n'
            "<antiaffinity><vm>R1</vm><vm>R2</vm><vm>R5</vm></antiaffinity>"
        ),
        "r.xml",
    )
    placed = resolve(r, BGP, hosts("A", "B", "C"))
    # R1 on A (with R4); R2 and R5 to the other hosts, fewest VMs first
    assert (placed["R1"], placed["R2"], placed["R5"]) == ("A", "B", "C")


def test_fixed_placement_over_max_vhost():
    r = parse_restrictions(rules('<net_deploy_at net="AS1-AS4" host="A"/>'), "r.xml")
    message = r"r.xml:2 \(net_deploy_at .*\) put 2 VMs on A, whose max_vhost is 1"
    with pytest.raises(PlanError, match=message):
        resolve(r, BGP, hosts("A", "B", max_vhost=1))


def test_unknown_names_are_all_reported_with_lines():
    r = parse_restrictions(
        rules(
            '<net_deploy_at net="nope" host="A"/>\n'
            '<vm_deploy_at vm="ghost" host="mars"/>\n'
            "<affinity><vm>R1</vm><vm>phantom</vm></affinity>\n"
            "<net_deploy_together><net>void</net></net_deploy_together>"
        ),
        "r.xml",
    )
    with pytest.raises(InputError) as exc:
        resolve(r, BGP, hosts("A", "B"))
    got = [(d.line, d.message) for d in exc.value.diagnostics]
    assert [line for line, _ in got] == [2, 3, 3, 4, 5]
    text = str(exc.value)
    for name in ("'nope'", "'ghost'", "'mars'", "'phantom'", "'void'"):
        assert name in text
    assert "cluster hosts: A, B" in text


def test_fqdn_matches_short_name_and_short_matches_fqdn():
    assert match_host("zermat.dit.upm.es", hosts("kofy", "zermat")) == [1]
    assert match_host("zermat", hosts("kofy.dit.upm.es", "zermat.dit.upm.es")) == [1]
    assert match_host("Zermat.DIT.upm.es", hosts("zermat")) == [0]
    assert match_host("zermat", hosts("zermat", "zermat.example.org")) == [0]  # exact first
    assert match_host("zermat.a", hosts("zermat.b", "zermat.c")) == [0, 1]


def test_ambiguous_host_is_an_error():
    r = parse_restrictions(rules('<vm_deploy_at vm="R1" host="h.x"/>'), "r.xml")
    with pytest.raises(InputError, match="ambiguous"):
        resolve(r, BGP, hosts("h.a", "h.b"))


def test_resolution_is_deterministic():
    r = parse_restrictions(
        rules(
            "<affinity><vm>R3</vm><vm>R4</vm></affinity>\n"
            "<antiaffinity><vm>R1</vm><vm>R2</vm><vm>R5</vm><vm>R6</vm></antiaffinity>"
        ),
        "r.xml",
    )
    cluster = hosts("A", "B", "C", "D")
    first = resolve(r, BGP, cluster)
    assert all(resolve(r, BGP, cluster) == first for _ in range(5))
    assert len({first[v] for v in ("R1", "R2", "R5", "R6")}) == 4


def test_net_deploy_together_in_ediv_attribute_form_gives_the_same_plan():
    """EDIV 0.9.4's static.pm read ``net=``; vnx-ediv later used <net> children."""
    body = '<vm_deploy_at vm="R5" host="B"/>\n'
    attr = parse_restrictions(rules(body + '<net_deploy_together net="AS2-AS3"/>'), "r.xml")
    child = parse_restrictions(
        rules(body + "<net_deploy_together><net>AS2-AS3</net></net_deploy_together>"), "r.xml")
    assert attr.net_deploy_together == child.net_deploy_together
    assert resolve(attr, BGP, hosts("A", "B")) == resolve(child, BGP, hosts("A", "B"))
    mixed = parse_restrictions(
        rules('<net_deploy_together net="AS1-AS4"><net>AS2-AS3</net></net_deploy_together>'))
    assert mixed.net_deploy_together[0].nets == ("AS1-AS4", "AS2-AS3")
    with pytest.raises(InputError, match="non-empty net= attribute"):
        parse_restrictions(rules('<net_deploy_together net=" "/>'))
