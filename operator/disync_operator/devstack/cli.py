"""``disync-operator dev``: the local control plane, the DataWorks emulator and the operator, examples applied."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("dev")
@click.option("--once", is_flag=True, envvar="DISYNC_DEV_ONCE", help="Exit 0 once every example is Ready (CI mode).")
@click.option("--timeout", default=180.0, show_default=True, help="With --once: give up after this many seconds.")
@click.option(
    "--examples",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="Folder of DISyncInstance manifests to apply (default: the repository's examples/).",
)
def dev_command(once: bool, timeout: float, examples: Path | None) -> None:
    """Local control plane + DataWorks emulator + the operator, with the examples applied. Ctrl-C stops."""
    from disync_operator.devstack.controlplane import REPO_ROOT
    from disync_operator.devstack.dev import run_dev

    raise SystemExit(run_dev(once=once, timeout=timeout, examples=examples or REPO_ROOT / "examples"))
