"""The planning options (-c, -a, -r, --load) of ``plan``, ``split``, ``map`` and ``deploy``.

Kept apart from ``ediv.client.offline`` so that ``ediv deploy`` reaches its hosts without
first importing the planner, the scenario parser and lxml: the algorithm names in ``-a``'s
help are looked up only when the help is shown."""

from __future__ import annotations

import click

ALGORITHM_HELP = "Partition algorithm: {names} (default: the cluster's default_segmentation)."


def algorithm_names() -> str:
    from ediv.partition import registry

    try:
        return ", ".join(registry.available())
    except Exception:  # a broken third-party plugin must not break --help
        return "see 'ediv algorithms'"


class AlgorithmOption(click.Option):
    """``-a``: its help names the algorithms installed (built in and from plugins)."""

    def get_help_record(self, ctx: click.Context) -> tuple[str, str] | None:
        self.help = ALGORITHM_HELP.format(names=algorithm_names())
        return super().get_help_record(ctx)


def parse_loads(values: tuple[str, ...]) -> dict[str, float]:
    loads: dict[str, float] = {}
    for item in values:
        host, sep, frac = item.partition("=")
        try:
            value = float(frac)
        except ValueError:
            value = -1.0
        if not sep or not host or not 0.0 <= value <= 1.0:
            raise click.BadParameter(
                f"{item!r}: expected HOST=FRACTION with 0.0 <= FRACTION <= 1.0", param_hint="--load"
            )
        loads[host] = value
    return loads


def planning_options(func):
    for decorator in reversed(
        [
            click.option(
                "-c",
                "--cluster",
                "cluster_path",
                type=click.Path(dir_okay=False),
                help="EDIV cluster.conf (default: an embedded 3-host cluster).",
            ),
            click.option(
                "-a",
                "--algorithm",
                cls=AlgorithmOption,
                metavar="NAME",
                help=ALGORITHM_HELP.format(names="..."),
            ),
            click.option(
                "-r",
                "--restrictions",
                "restrictions_path",
                type=click.Path(dir_okay=False),
                help="EDIV restriction file (<deployment_restrictions>).",
            ),
            click.option(
                "--load",
                "loads",
                multiple=True,
                metavar="HOST=FRACTION",
                help="Override a host's 1-minute load (0.0 idle .. 1.0 fully loaded).",
            ),
        ]
    ):
        func = decorator(func)
    return func
