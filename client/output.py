"""Output shared by direct mode and --server mode, so both print exactly the same."""

from __future__ import annotations

import json
import sys

import click


def print_exec_results(results: list[dict], as_json: bool) -> None:
    """`ediv exec` output: JSON list, or one block per VM; exit 1 when any VM failed."""
    failed = [r for r in results if r["exit_code"] != 0]
    if as_json:
        click.echo(json.dumps(results, indent=2))
    else:
        for r in results:
            mark = "ok" if r["exit_code"] == 0 else f"exit {r['exit_code']}"
            click.echo(f"--- {r['vm'] or '(host)'} on {r['host']}: {mark}")
            if r["output"]:
                click.echo(r["output"].rstrip())
        click.echo(f"{len(results) - len(failed)}/{len(results)} succeeded")
    if failed:
        sys.exit(1)


def print_vm_state(scenario: str, result: dict, as_json: bool) -> None:
    """`ediv vm` output: what the VM was and is now, and where it runs."""
    data = {"scenario": scenario, "vm": result["vm"], "host": result.get("host"),
            "action": result["action"], "previous": result["previous"],
            "state": result["state"]}
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    change = (f"{data['previous']} -> {data['state']}" if data["previous"] != data["state"]
              or data["action"] in ("reboot", "reset") else f"already {data['state']}")
    click.echo(f"{scenario}/{data['vm']} on {data['host']}: {data['action']}: {change}")
