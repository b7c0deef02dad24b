"""``ediv-ctl``: EDIV's ``ediv_ctl.pl`` flags on top of the ``ediv`` commands, so that EDIV
users' scripts run unchanged.

    ediv-ctl -t -s FILE [-c CLUSTER] [-a ALGORITHM] [-r RESTRICTIONS]   ediv deploy FILE ...
    ediv-ctl -x SEQ -s FILE [-M VM]...                                  ediv exec FILE SEQ
    ediv-ctl -d -s FILE                                                 ediv release FILE
    ediv-ctl -P -s FILE                                                 ediv release FILE --purge

Each run is translated into exactly one ``ediv`` command line and handed to it: output,
errors and exit status are those of that command.
"""

from __future__ import annotations

import argparse
import sys

EPILOG = """EDIV's monitor tools map to: ediv hosts (cluster load and memory), ediv status /
ediv locate (where each VM runs), ediv segments (VLAN/VXLAN ids in use), ediv cleanup
(EDIV's cleanup script)."""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ediv-ctl", description="EDIV's ediv_ctl command line, run by ediv.", epilog=EPILOG)
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("-t", action="store_true", help="deploy the scenario (ediv deploy)")
    mode.add_argument("-x", metavar="SEQ", help="run command sequence SEQ (ediv exec)")
    mode.add_argument("-d", action="store_true", help="release the scenario (ediv release)")
    mode.add_argument("-P", action="store_true",
                      help="release and purge the scenario (ediv release --purge)")
    p.add_argument("-s", metavar="FILE", required=True, help="the VNUML scenario file")
    p.add_argument("-c", metavar="CLUSTER", help="cluster.conf (default: the local testbed's)")
    p.add_argument("-a", metavar="ALGORITHM", help="partition algorithm (with -t)")
    p.add_argument("-r", metavar="RESTRICTIONS", help="restriction file (with -t)")
    p.add_argument("-M", metavar="VM", action="append", default=[],
                   help="with -x: only this VM (repeatable, VNUML's -M)")
    p.add_argument("--state", metavar="PATH", help="state store (ediv --state)")
    return p


def translate(argv: list[str]) -> list[str]:
    """The ``ediv`` argument vector that does what ``ediv-ctl argv`` asks."""
    p = parser()
    a = p.parse_args(argv)
    if (a.a or a.r) and not a.t:
        p.error("-a and -r apply to -t only")
    if a.M and a.x is None:
        p.error("-M applies to -x only")
    cluster = ["-c", a.c] if a.c else []
    if a.t:
        out = ["deploy", a.s, *cluster, *(["-a", a.a] if a.a else []),
               *(["-r", a.r] if a.r else [])]
    elif a.x is not None:
        out = ["exec", a.s, a.x, *cluster, *(x for vm in a.M for x in ("--vm", vm))]
    else:
        out = ["release", a.s, *cluster, *(["--purge"] if a.P else [])]
    return out + (["--state", a.state] if a.state else [])


def main(argv: list[str] | None = None) -> None:
    from ediv.client.cli import _register, cli

    args = translate(sys.argv[1:] if argv is None else argv)
    _register()
    cli.main(args, prog_name="ediv")


if __name__ == "__main__":
    main()
