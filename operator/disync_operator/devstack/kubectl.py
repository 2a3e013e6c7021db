"""A thin wrapper around the kubectl built with the control plane, so client and server versions match."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class KubectlError(RuntimeError):
    def __init__(self, args: Sequence[str], result: subprocess.CompletedProcess[str]) -> None:
        self.returncode = result.returncode
        self.stdout = result.stdout
        self.stderr = result.stderr
        super().__init__(f"kubectl {' '.join(args)} exited {result.returncode}: {result.stderr.strip()}")


@dataclass(frozen=True)
class Kubectl:
    binary: Path
    kubeconfig: Path
    namespace: str | None = None

    def bound(self, namespace: str | None = None, kubeconfig: Path | None = None) -> Kubectl:
        return Kubectl(
            self.binary, kubeconfig or self.kubeconfig, namespace if namespace is not None else self.namespace
        )

    def run(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        argv = [str(self.binary), f"--kubeconfig={self.kubeconfig}"]
        if self.namespace:
            argv.append(f"--namespace={self.namespace}")
        argv += list(args)
        result = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=timeout, check=False)
        if check and result.returncode != 0:
            raise KubectlError(args, result)
        return result

    def __call__(self, *args: str, input: str | None = None, check: bool = True) -> str:
        return self.run(*args, input=input, check=check).stdout

    def apply(self, manifest: str, *extra: str) -> str:
        return self("apply", "-f", "-", *extra, input=manifest)

    def get_json(self, *args: str) -> Any:
        return json.loads(self("get", *args, "-o", "json"))
