"""The `disync-operator` command: run the operator, the DataWorks emulator, or the local dev stack."""

from __future__ import annotations

from pathlib import Path

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="disync-operator")
def main() -> None:
    """Kubernetes operator for Alibaba Cloud DataWorks real-time synchronization."""


@main.command("run")
@click.option("--region", help="Default region (env DISYNC_REGION).")
@click.option("--endpoint", help="Explicit DataWorks endpoint, e.g. the emulator (env DISYNC_ENDPOINT).")
@click.option("--namespace", "namespaces", multiple=True, help="Watch only these namespaces (repeatable).")
def run_command(region: str | None, endpoint: str | None, namespaces: tuple[str, ...]) -> None:
    """Run the operator (configuration: DISYNC_* environment variables; see the README)."""
    from disync_operator.controller.main import load_settings, run

    settings = load_settings(region=region, endpoint=endpoint, namespaces=list(namespaces) or None)
    run(settings)


@main.command("crd")
def crd_command() -> None:
    """Print the DISyncInstance CRD generated from the Python models."""
    from disync_operator.crd import render

    click.echo(render(), nl=False)


@main.command("dev")
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


def _register_subcommands() -> None:
    # Subcommands live next to what they run; importing them here keeps `disync-operator --help` complete.
    from disync_operator.emulator.cli import emulator_command

    main.add_command(emulator_command)


_register_subcommands()
