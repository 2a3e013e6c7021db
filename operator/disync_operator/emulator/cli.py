"""``disync-operator emulator``: run the DataWorks emulator as a process (dev stack, benchmarks, subprocess tests)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

import click
from pydantic import ValidationError

from disync_operator.emulator._config import ACTIONS, EmulatorConfig, FaultConfig, demo_config
from disync_operator.emulator._server import Emulator

# CLI flag -> FaultConfig field. Flags override the config file's `faults:` block field by field.
_FAULT_FLAGS: dict[str, str] = {
    "seed": "seed",
    "latency_ms": "latency_ms",
    "jitter_ms": "jitter_ms",
    "error_rate": "error_rate",
    "malformed_rate": "malformed_rate",
    "truncated_rate": "truncated_rate",
    "hang_rate": "hang_rate",
    "hang_seconds": "hang_seconds",
    "reset_rate": "reset_rate",
    "throttle_qps": "throttle_qps",
    "throttle_burst": "throttle_burst",
    "drop_start_response": "drop_start_response",
    "long_fields": "long_fields",
    "long_fields_dirty": "long_fields_dirty",
    "long_header_max": "long_header_max",
    "data_status": "data_status",
    "big_body_bytes": "big_body_bytes",
    "gzip_bomb_bytes": "gzip_bomb_bytes",
    "declare_length": "declare_length",
    "trickle_seconds_per_byte": "trickle_seconds_per_byte",
    "trickle_max_seconds": "trickle_max_seconds",
}


def _write_atomically(path: Path, text: str) -> None:
    # Waiters poll for the file's existence; a rename guarantees they never read a half-written URL.
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(tmp, path)


def build_config(config_path: Path | None, overrides: dict[str, Any], timings: dict[str, Any]) -> EmulatorConfig:
    config = EmulatorConfig.from_yaml(config_path) if config_path is not None else demo_config()
    fault_values = config.faults.model_dump()
    fault_values.update({_FAULT_FLAGS[k]: v for k, v in overrides.items() if v is not None and k in _FAULT_FLAGS})
    timing_values = config.timings.model_dump()
    timing_values.update({k: v for k, v in timings.items() if v is not None})
    data = config.model_dump()
    data["faults"] = FaultConfig.model_validate(fault_values)
    data["timings"] = timing_values
    # Re-validate the whole model: model_dump() unwraps SecretStr into SecretStr objects, which validate as-is.
    return EmulatorConfig.model_validate(data)


async def _run(emulator: Emulator, host: str, port: int, ready_file: Path | None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    url = await emulator.start(host, port)
    try:
        click.echo(f"emulator listening on {url}")
        sys.stdout.flush()
        if ready_file is not None:
            _write_atomically(ready_file, url + "\n")
        await stop.wait()
    finally:
        await emulator.stop()
        logging.getLogger("disync_operator.emulator").info("emulator stopped")


@click.command("emulator")
@click.option(
    "--config",
    "config_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Emulator YAML (access_keys, projects, timings, faults). Default: the embedded demo registry.",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind. The admin API has no auth.")
@click.option("--port", type=int, default=0, show_default=True, help="Port; 0 picks a free one.")
@click.option(
    "--ready-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the base URL here once listening.",
)
@click.option("--seed", type=int, default=None, help="Seed of the fault RNG.")
@click.option("--latency-ms", type=float, default=None, help="Fixed added latency per request.")
@click.option("--jitter-ms", type=float, default=None, help="Uniform random extra latency, 0..N ms.")
@click.option("--error-rate", type=float, default=None, help="Fraction answered 500 InternalError.System.")
@click.option("--malformed-rate", type=float, default=None, help="Fraction answered 502 with an HTML body.")
@click.option("--truncated-rate", type=float, default=None, help="Fraction answered 200 with truncated JSON.")
@click.option("--hang-rate", type=float, default=None, help="Fraction never answered (until --hang-seconds).")
@click.option("--hang-seconds", type=float, default=None, help="How long a hung request hangs before reset.")
@click.option("--reset-rate", type=float, default=None, help="Fraction whose connection is reset.")
@click.option("--throttle-qps", type=float, default=None, help="Token-bucket rate; excess gets 429 Throttling.User.")
@click.option("--throttle-burst", type=float, default=None, help="Token-bucket capacity (default max(1, qps)).")
@click.option(
    "--drop-start-response", type=int, default=None, help="Perform the next N starts but reset their connection."
)
@click.option("--long-fields", type=int, default=None, help="Message and RequestId of N characters in every answer.")
@click.option(
    "--long-fields-dirty/--no-long-fields-dirty",
    default=None,
    help="Fill those long fields with ANSI escapes and control characters.",
)
@click.option("--long-header-max", type=int, default=None, help="At most N characters of them in x-acs-request-id.")
@click.option("--data-status", default=None, help="Data.Status of a successful Start/Stop/Terminate (performed).")
@click.option("--big-body-bytes", type=int, default=None, help="Pad 200 answers with whitespace to N bytes.")
@click.option("--gzip-bomb-bytes", type=int, default=None, help="Send 200 answers gzipped, inflating to N bytes.")
@click.option(
    "--declare-length/--no-declare-length",
    default=None,
    help="Content-Length for big bodies and gzip bombs (default: chunked).",
)
@click.option(
    "--trickle-seconds-per-byte", type=float, default=None, help="Send 200 answer bodies one byte every N seconds."
)
@click.option("--trickle-max-seconds", type=float, default=None, help="Cut a trickled answer after N seconds.")
@click.option(
    "--fault-actions",
    default=None,
    help=f"Comma-separated actions faults apply to (default all): {','.join(ACTIONS)}.",
)
@click.option("--start-wait-seconds", type=float, default=None, help="How long a started task stays WAIT.")
@click.option("--stop-seconds", type=float, default=None, help="How long a stopped task stays KILLING.")
@click.option("--stop-state", type=click.Choice(["PAUSE", "NORUN"]), default=None, help="State after a stop.")
@click.option(
    "--log-level",
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"]),
    default="INFO",
    show_default=True,
)
def emulator_command(
    config_path: Path | None,
    host: str,
    port: int,
    ready_file: Path | None,
    fault_actions: str | None,
    start_wait_seconds: float | None,
    stop_seconds: float | None,
    stop_state: str | None,
    log_level: str,
    **fault_flags: Any,
) -> None:
    """Run the DataWorks DI sync-instance API emulator until SIGTERM/SIGINT."""
    logging.basicConfig(level=log_level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    overrides = dict(fault_flags)
    try:
        config = build_config(
            config_path,
            overrides,
            {"start_wait_seconds": start_wait_seconds, "stop_seconds": stop_seconds, "stop_state": stop_state},
        )
        if fault_actions is not None:
            actions = [a.strip() for a in fault_actions.split(",") if a.strip()]
            config = config.model_copy(
                update={"faults": FaultConfig.model_validate({**config.faults.model_dump(), "actions": actions})}
            )
    except (ValidationError, OSError, ValueError) as exc:
        raise click.ClickException(f"invalid emulator configuration: {exc}") from exc
    if host not in ("127.0.0.1", "::1", "localhost"):
        logging.getLogger("disync_operator.emulator").warning(
            "binding %s: the /_emulator/ admin API is unauthenticated", host
        )
    asyncio.run(_run(Emulator(config), host, port, ready_file))
