"""The `disync-operator` command: run the operator, the DataWorks emulator, or the local dev stack."""

from __future__ import annotations

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="disync-operator")
def main() -> None:
    """Kubernetes operator for Alibaba Cloud DataWorks real-time synchronization."""


def _register_subcommands() -> None:
    # Subcommands live next to what they run; importing them here keeps `disync-operator --help` complete.
    from disync_operator.emulator.cli import emulator_command

    main.add_command(emulator_command)


_register_subcommands()
