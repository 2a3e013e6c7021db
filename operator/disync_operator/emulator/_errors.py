"""The error the emulator answers with, shaped like the Alibaba Cloud POP gateway's JSON error body."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """An HTTP 4xx/5xx answer: ``{RequestId, HostId, Code, Message, Recommend}``."""

    def __init__(self, http_status: int, code: str, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(f"{http_status} {code}: {message}")
        self.http_status = http_status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})

    def body(self, request_id: str, host_id: str) -> dict[str, Any]:
        return {
            "RequestId": request_id,
            "HostId": host_id,
            "Code": self.code,
            "Message": self.message,
            "Recommend": (
                f"https://api.aliyun.com/troubleshoot?q={self.code}&product=dataworks-public&requestId={request_id}"
            ),
        }


def param_invalid(detail: str) -> ApiError:
    # The documented message is "The parameter is invalid."; the detail names the offending parameter.
    return ApiError(400, "Param.Invalid", f"The parameter is invalid. {detail}")


def forbidden() -> ApiError:
    # Unknown and not-permitted projects get the same answer so an AccessKey cannot enumerate projects.
    return ApiError(403, "Forbidden.Access", "Access is forbidden.")
