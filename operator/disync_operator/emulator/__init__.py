"""An emulator of the DataWorks DI sync-instance OpenAPI (dataworks-public 2020-05-18).

Public face::

    from disync_operator.emulator import Emulator, EmulatorConfig, FaultConfig, demo_config

    async with Emulator(demo_config()).serve() as url:   # http://127.0.0.1:<port>
        ...

It verifies ACS3-HMAC-SHA256 signatures like the cloud, keeps a lazily-timed instance state machine, injects
faults on demand and exposes a loopback admin API under ``/_emulator/``. See ``disync-operator emulator --help``.
"""

from disync_operator.emulator._config import (
    AccessKeyConfig,
    ConsoleFailure,
    EmulatorConfig,
    FaultConfig,
    ProjectConfig,
    TaskConfig,
    TimingsConfig,
    demo_config,
)
from disync_operator.emulator._errors import ApiError
from disync_operator.emulator._log import RequestLog, RequestRecord
from disync_operator.emulator._server import Emulator
from disync_operator.emulator._state import EmulatorState, InstanceView

__all__ = [
    "AccessKeyConfig",
    "ApiError",
    "ConsoleFailure",
    "Emulator",
    "EmulatorConfig",
    "EmulatorState",
    "FaultConfig",
    "InstanceView",
    "ProjectConfig",
    "RequestLog",
    "RequestRecord",
    "TaskConfig",
    "TimingsConfig",
    "demo_config",
]
