"""`crisislens triage --engine NAME`: where a triage runs. `local` is the runtime's own run loop
(one machine, a SQLite store); another engine (`ray`: a Ray cluster writing Parquet shards) is a
stage's, found through the `crisislens.engines` entry-point group, so the runtime imports none
of them and a base install needs none of their libraries.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from crisislens.runtime.cli.base import EXIT_MISSING_DEPENDENCY, CliError, require

LOCAL = "local"
ENGINE_GROUP = "crisislens.engines"
# engine -> (the module it needs, the extra that installs it)
NEEDS = {"ray": ("ray", "cluster")}


def add_engine_choice(parser: argparse.ArgumentParser) -> None:
    """--engine, and the options of the cluster engine (--address, --parquet, --shard-size)."""
    parser.add_argument(
        "--engine",
        choices=[LOCAL, *NEEDS],
        default=LOCAL,
        help="local: this machine, into --store (default); ray: a Ray cluster, into Parquet shards under --parquet "
        "(needs crisislens[cluster]; --workers = actors, --threads = ONNX Runtime threads per actor)",
    )
    parser.add_argument(
        "--address",
        default=None,
        metavar="ADDRESS",
        help="--engine ray: the cluster to join (HOST:PORT, ray://HOST:PORT; default: $RAY_ADDRESS, else a local "
        "Ray instance started and stopped by the run)",
    )
    parser.add_argument(
        "--parquet", type=Path, default=None, metavar="DIR", help="--engine ray: the shard folder (resumable)"
    )
    parser.add_argument(
        "--shard-size", type=int, default=None, metavar="N", help="--engine ray: posts per shard (default: 10000)"
    )


def run_on_engine(args: argparse.Namespace) -> int | None:
    """Run `triage` on the engine `args.engine` names; None for the local engine (the caller runs it)."""
    if args.engine == LOCAL:
        given = [f"--{name.replace('_', '-')}" for name in ("address", "parquet", "shard_size") if getattr(args, name)]
        if given:
            raise CliError(f"{', '.join(given)}: only with --engine ray")
        return None
    from importlib.metadata import entry_points  # only here: its import costs every local run's start

    module, extra = NEEDS[args.engine]
    require(module, extra)
    found = [ep for ep in entry_points(group=ENGINE_GROUP) if ep.name == args.engine]
    if not found:
        raise CliError(
            f"--engine {args.engine}: not installed: pip install 'crisislens[{extra}]'", EXIT_MISSING_DEPENDENCY
        )
    return int(found[0].load()(args))


__all__ = ["ENGINE_GROUP", "LOCAL", "NEEDS", "add_engine_choice", "run_on_engine"]
