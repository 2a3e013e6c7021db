"""The `disync-operator` command: run the operator, print its CRD; in a development install also the DataWorks
emulator and the local dev stack."""

from __future__ import annotations

import importlib

import click

# Commands of the development install only. Their code (disync_operator.devstack, disync_operator.emulator) is left out
# of the wheel and their dependencies are the `dev` extra's, so a runtime install (the image) answers them with what
# to install rather than a traceback.
DEV_COMMANDS = {
    "dev": "disync_operator.devstack.cli:dev_command",
    "emulator": "disync_operator.emulator.cli:emulator_command",
}
DEV_INSTALL_HINT = (
    "it is part of the development install, not of the runtime package: in a checkout of the repository run "
    "`pip install -e '.[dev]'` (or `make run`, which does it)"
)


class _Commands(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *DEV_COMMANDS])

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in DEV_COMMANDS:
            return _dev_command(cmd_name)
        return super().get_command(ctx, cmd_name)


def _dev_command(name: str) -> click.Command:
    module_name, _, attribute = DEV_COMMANDS[name].partition(":")
    try:
        command: click.Command = getattr(importlib.import_module(module_name), attribute)
        return command
    except ModuleNotFoundError as error:
        missing = error.name or "?"
        if missing.startswith("disync_operator."):
            reason = DEV_INSTALL_HINT
        else:
            reason = f"the `dev` extra is missing (no module {missing!r}): in a checkout, `pip install -e '.[dev]'`"
    return _unavailable(name, reason)


def _unavailable(name: str, reason: str) -> click.Command:
    @click.command(
        name,
        help=f"(not available in this install: {reason})",
        context_settings={"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": []},
    )
    def unavailable() -> None:
        raise click.UsageError(f"`disync-operator {name}` is not available here: {reason}.")

    return unavailable


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
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
