"""The `disync-operator` command: run the operator, the DataWorks emulator, or the local dev stack."""

from __future__ import annotations

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


def _register_subcommands() -> None:
    # Subcommands live next to what they run; importing them here keeps `disync-operator --help` complete.
    from disync_operator.emulator.cli import emulator_command

    main.add_command(emulator_command)


_register_subcommands()
