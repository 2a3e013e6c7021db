"""The aiohttp application and the :class:`Emulator` that owns state, faults, log and server."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import socket
import struct
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from aiohttp import web
from pydantic import ValidationError

from disync_operator.dataworks._signing import parse_authorization
from disync_operator.emulator import _sts as sts
from disync_operator.emulator._auth import SignedRequest, Verifier, WallClock
from disync_operator.emulator._config import (
    ACTIONS,
    API_VERSION,
    AccessKeyConfig,
    ConsoleFailure,
    EmulatorConfig,
    FaultConfig,
    demo_config,
)
from disync_operator.emulator._errors import ApiError
from disync_operator.emulator._faults import FaultDecision, FaultEngine, Hostile
from disync_operator.emulator._hostile import (
    GzipBomb,
    long_header_value,
    long_request_id,
    long_text,
    padded_body,
    padded_length,
)
from disync_operator.emulator._log import RequestLog, RequestRecord
from disync_operator.emulator._state import Clock, DispatchResult, EmulatorState

log = logging.getLogger("disync_operator.emulator")

_JSON = "application/json;charset=utf-8"
_BAD_GATEWAY_HTML = (
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>"
    "\r\n<hr><center>Tengine</center>\r\n</body>\r\n</html>\r\n"
)


def _new_request_id() -> str:
    # Cloud request ids are upper-case UUIDs.
    return str(uuid.uuid4()).upper()


def _decoded_query(raw_path: str) -> dict[str, str]:
    # parse_qsl decodes '+' as space and %XX, which is what the official SDK's urlencode() produced; our client's
    # canonical (%20) form decodes to the same values. Duplicate keys: the last wins, as in the SDK's dict.
    return dict(parse_qsl(urlsplit(raw_path).query, keep_blank_values=True))


def _reset_connection(request: web.Request) -> None:
    """Close the connection without an answer; SO_LINGER 0 turns the close into a TCP RST."""
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


class _NoResponse(Exception):
    """Raised after the connection was deliberately dropped: there is nothing left to send."""


# The actions whose Data.Status is an outcome ("success"/"fail"); GetDISyncInstanceInfo's is the task's state.
_ACTION_VERBS = frozenset({"StartDISyncInstance", "StopDISyncInstance", "TerminateDISyncInstance"})


def _label(*names: str | None) -> str | None:
    """The request log's `fault`: the names of everything that shaped the answer, joined with '+'."""
    present = [name for name in names if name]
    return "+".join(present) if present else None


def _long_fields(request_id: str, hostile: Hostile) -> tuple[str, str, str]:
    """(Message, body RequestId, header RequestId) of `long_fields` characters (the header's at most
    `long_header_max`)."""
    length, dirty = hostile.long_fields, hostile.long_fields_dirty
    return (
        long_text(length, dirty=dirty),
        long_request_id(request_id, length, dirty=dirty),
        long_header_value(request_id, min(length, hostile.long_header_max), dirty=dirty),
    )


def _shape(
    action: str, result: DispatchResult, request_id: str, hostile: Hostile
) -> tuple[dict[str, Any], str, str, list[str]]:
    """A 200 answer's Data, body RequestId and header RequestId under `hostile`, and the names of what applied."""
    data = dict(result.data)
    applied: list[str] = []
    if hostile.data_status is not None and action in _ACTION_VERBS and result.outcome == "success":
        data["Status"] = hostile.data_status
        applied.append("data_status")
    body_id = header_id = request_id
    if hostile.long_fields:
        data["Message"], body_id, header_id = _long_fields(request_id, hostile)
        applied.append("long_fields")
    return data, body_id, header_id, applied


class Emulator:
    """An in-process DataWorks DI sync-instance API.

    ``clock`` (monotonic seconds) drives instance state and throttling, ``wall_clock`` (unix seconds) drives the
    x-acs-date check and nonce expiry; both are injectable for tests.
    """

    def __init__(
        self,
        config: EmulatorConfig | None = None,
        *,
        clock: Clock | None = None,
        wall_clock: WallClock | None = None,
    ) -> None:
        if config is None:
            config = demo_config()
        self.config = config
        self._clock: Clock = clock or time.monotonic
        self._wall_clock: WallClock = wall_clock or time.time
        self.state = EmulatorState(config, self._clock)
        self.faults = FaultEngine(config.faults, self._clock)
        self.request_log = RequestLog(config.request_log_size)
        self.verifier = Verifier(
            config.access_keys,
            tolerance_seconds=config.timestamp_tolerance_seconds,
            nonce_capacity=config.nonce_cache_size,
            wall_clock=self._wall_clock,
        )
        self._runner: web.AppRunner | None = None
        self._closing: asyncio.Event | None = None
        self.url: str | None = None

    # -- lifecycle -------------------------------------------------------------------------------------------

    def make_app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/", self._handle_api)
        app.router.add_get("/", self._handle_api)  # STS's SDKs send AssumeRoleWithOIDC as a GET
        app.router.add_get("/_emulator/healthz", self._healthz)
        app.router.add_get("/_emulator/requests", self._get_requests)
        app.router.add_delete("/_emulator/requests", self._clear_requests)
        app.router.add_get("/_emulator/counters", self._get_counters)
        app.router.add_get("/_emulator/faults", self._get_faults)
        app.router.add_put("/_emulator/faults", self._put_faults)
        app.router.add_get("/_emulator/instances", self._get_instances)
        app.router.add_delete("/_emulator/instances", self._reset_instances)
        app.router.add_post("/_emulator/console/{project}/{file}/{action}", self._console)
        return app

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Listen and return the base URL (``http://host:port``); port 0 picks a free port."""
        if self._runner is not None:
            raise RuntimeError("emulator already started")
        self._closing = asyncio.Event()
        # handler_cancellation: a hung request ends as soon as the client gives up; access_log off because we log
        # one line per request ourselves (without headers, hence without secrets).
        runner = web.AppRunner(self.make_app(), handler_cancellation=True, access_log=None, shutdown_timeout=2.0)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        self._runner = runner
        bound_host, bound_port = runner.addresses[0][:2]
        url_host = f"[{bound_host}]" if ":" in bound_host else bound_host
        self.url = f"http://{url_host}:{bound_port}"
        return self.url

    async def stop(self) -> None:
        if self._closing is not None:
            self._closing.set()  # release hung requests so shutdown does not wait for them
        if self._runner is not None:
            await self._runner.cleanup()
        self._runner = None
        self.url = None

    @contextlib.asynccontextmanager
    async def serve(self, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[str]:
        url = await self.start(host, port)
        try:
            yield url
        finally:
            await self.stop()

    @contextlib.contextmanager
    def serve_in_thread(self, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
        """Run the server on its own event loop in a daemon thread, for synchronous callers (e.g. the SDK)."""
        loop = asyncio.new_event_loop()
        ready = threading.Event()
        outcome: dict[str, Any] = {}

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                outcome["url"] = loop.run_until_complete(self.start(host, port))
            except BaseException as exc:
                outcome["error"] = exc
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self.stop())
            loop.close()

        thread = threading.Thread(target=run, name="dataworks-emulator", daemon=True)
        thread.start()
        ready.wait()
        if "error" in outcome:
            raise RuntimeError("emulator failed to start") from outcome["error"]
        try:
            yield str(outcome["url"])
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=10)

    def set_faults(self, faults: FaultConfig) -> None:
        self.faults.replace(faults)

    # -- the API ---------------------------------------------------------------------------------------------

    async def _execute_later(
        self,
        seconds: float,
        action: str,
        query: dict[str, str],
        access_key: AccessKeyConfig,
        record: Callable[[int | None, str | None, str | None], None],
    ) -> DispatchResult:
        """The action takes effect `seconds` from now. A client that goes away meanwhile cancels this handler
        (handler_cancellation), not the action: it is shielded, and recorded with no answer when it lands."""

        async def act() -> DispatchResult:
            await asyncio.sleep(seconds)
            return self.state.dispatch(action, query, access_key)

        acting = asyncio.ensure_future(act())
        try:
            return await asyncio.shield(acting)
        except asyncio.CancelledError:

            def landed(done: asyncio.Future[DispatchResult]) -> None:
                if not done.cancelled() and done.exception() is None:
                    record(None, done.result().outcome, "client_gone")

            acting.add_done_callback(landed)
            raise

    async def _handle_sts(
        self, request: web.Request, query: dict[str, str], request_id: str, seq: int, wall: float
    ) -> web.StreamResponse:
        """STS AssumeRoleWithOIDC (RRSA): anonymous, its parameters in the query or the form body."""
        form = {**query, **{k: v for k, v in (await request.post()).items() if isinstance(v, str)}}
        status, code = 200, "success"
        try:
            if self.config.sts is None:
                raise ApiError(404, "InvalidAction.NotFound", "This emulator has no STS configured.")
            keys = {key.id: key for key in self.config.access_keys}
            now = dt.datetime.fromtimestamp(self._wall_clock(), dt.UTC)
            answer: dict[str, Any] = sts.assume_role_with_oidc(form, self.config.sts, keys, now, request_id)
        except ApiError as error:
            status, code = error.http_status, error.code
            answer = error.body(request_id, request.host)
        # The OIDC token is a credential: it is never kept in the request log.
        params = {k: v for k, v in form.items() if k != "OIDCToken"}
        self.request_log.append(
            RequestRecord(
                seq=seq,
                time=wall,
                action=sts.ACTION,
                params=params,
                access_key_id=None,
                http_status=status,
                code=code,
                fault=None,
                request_id=request_id,
            )
        )
        log.info("%s status=%s outcome=%s request_id=%s", sts.ACTION, status, code, request_id)
        return web.json_response(answer, status=status)

    async def _handle_api(self, request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        request_id = _new_request_id()
        action = request.headers.get("x-acs-action", "")
        query = _decoded_query(request.raw_path)
        claimed = None
        authorization = request.headers.get("Authorization")
        if authorization:
            parsed = parse_authorization(authorization)
            claimed = parsed.access_key_id if parsed else None
        seq = self.request_log.next_seq()
        wall = self._wall_clock()
        host_id = request.host

        def record(http_status: int | None, code: str | None, fault: str | None) -> None:
            entry = RequestRecord(
                seq=seq,
                time=wall,
                action=action,
                params=dict(query),
                access_key_id=claimed,
                http_status=http_status,
                code=code,
                fault=fault,
                request_id=request_id,
            )
            self.request_log.append(entry)
            log.info(
                "%s ak=%s status=%s outcome=%s request_id=%s %.1fms",
                action or "-",
                claimed or "-",
                http_status if http_status is not None else "none",
                entry.outcome,
                request_id,
                (time.perf_counter() - started) * 1000,
            )

        if not action and query.get("Action") == sts.ACTION:
            return await self._handle_sts(request, query, request_id, seq, wall)

        fault: FaultDecision | None = None
        try:
            if not action:
                raise ApiError(400, "MissingAction", "The x-acs-action header is mandatory for this request.")
            if action not in ACTIONS:
                raise ApiError(404, "InvalidAction.NotFound", f"Specified api {action!r} is not found.")
            version = request.headers.get("x-acs-version")
            if version != API_VERSION:
                raise ApiError(400, "InvalidVersion", f"Specified version {version!r} is not valid; use {API_VERSION}.")

            delay = self.faults.latency_seconds(action)
            if delay > 0:
                await asyncio.sleep(delay)

            body = await request.read()
            signed = SignedRequest(
                method=request.method,
                path=request.path,
                query=query,
                headers={name.lower(): request.headers.getall(name) for name in request.headers},
                body=body,
            )
            access_key = self.verifier.verify(signed)

            fault = self.faults.decide(action)
            if fault.kind == "throttle":
                raise ApiError(
                    429,
                    "Throttling.User",
                    "Request was denied due to user flow control.",
                    headers={"x-acs-retry-after": str(fault.retry_after_ms)},
                )
            if fault.kind == "error":
                raise ApiError(500, "InternalError.System", "An internal error occurred.")
            if fault.kind == "malformed":
                record(502, None, "malformed")
                return web.Response(status=502, text=_BAD_GATEWAY_HTML, content_type="text/html")
            if fault.kind in ("hang", "reset"):
                record(None, None, fault.kind)
                if fault.kind == "hang":
                    await self._hang()
                _reset_connection(request)
                raise _NoResponse

            execution = self.faults.execution_seconds(action)
            if execution > 0:
                result = await self._execute_later(execution, action, query, access_key, record)
            else:
                result = self.state.dispatch(action, query, access_key)
            hostile = fault.hostile
            data, body_id, header_id = result.data, request_id, request_id
            shaped: list[str] = []
            if hostile is not None:
                data, body_id, header_id, shaped = _shape(action, result, request_id, hostile)
            payload = json.dumps({"Success": True, "RequestId": body_id, "Data": data}, separators=(",", ":")).encode()
            if fault.kind == "drop_start_response":
                record(None, result.outcome, fault.kind)
                _reset_connection(request)
                raise _NoResponse
            if fault.kind == "truncated":
                record(200, result.outcome, _label(fault.kind, *shaped))
                payload = payload[: max(1, len(payload) // 2)]
            elif hostile is not None and hostile.streamed:
                record(200, result.outcome, _label(*shaped, *hostile.body_modes()))
                return await self._stream(request, seq, payload, header_id, hostile)
            else:
                record(200, result.outcome, _label(*shaped))
            return web.Response(
                status=200,
                body=payload,
                content_type="application/json",
                charset="utf-8",
                headers={"x-acs-request-id": header_id},
            )
        except ApiError as err:
            fault_name: str | None = fault.kind if fault is not None and fault.kind in ("throttle", "error") else None
            document = err.body(request_id, host_id)
            header_id = request_id
            hostile = fault.hostile if fault is not None else None
            if hostile is not None and hostile.long_fields:
                # Only once a fault was decided, i.e. after authentication, like every other fault.
                document["Message"], document["RequestId"], header_id = _long_fields(request_id, hostile)
                fault_name = _label(fault_name, "long_fields")
            record(err.http_status, err.code, fault_name)
            return web.Response(
                status=err.http_status,
                body=json.dumps(document).encode(),
                content_type="application/json",
                charset="utf-8",
                headers={"x-acs-request-id": header_id, **err.headers},
            )
        except _NoResponse:
            # The transport is gone; aiohttp must not try to write a response. Returning an (unsent) response
            # keeps aiohttp from logging an "Error handling request" traceback.
            return web.Response(status=499)

    async def _stream(
        self, request: web.Request, seq: int, payload: bytes, request_id: str, hostile: Hostile
    ) -> web.StreamResponse:
        """Write a 200 answer piece by piece: padded to big_body_bytes, or as a gzip bomb, or as is; trickled when
        trickle_seconds_per_byte is set. How it ended goes on the request's log entry."""
        response = web.StreamResponse(status=200, headers={"x-acs-request-id": request_id})
        response.content_type = "application/json"
        response.charset = "utf-8"
        chunks: Iterable[bytes]
        if hostile.gzip_bomb_bytes:
            bomb = GzipBomb(payload, hostile.gzip_bomb_bytes)
            chunks = bomb
            response.headers["Content-Encoding"] = "gzip"
            if hostile.declare_length:
                response.content_length = bomb.length
        elif hostile.big_body_bytes:
            chunks = padded_body(payload, hostile.big_body_bytes)
            if hostile.declare_length:
                response.content_length = padded_length(payload, hostile.big_body_bytes)
        else:
            chunks = (payload,)
            response.content_length = len(payload)
        pause = hostile.trickle_seconds_per_byte
        started = time.monotonic()
        cut_at = started + hostile.trickle_max_seconds
        sent, end = 0, "complete"
        try:
            await response.prepare(request)
            for chunk in chunks:
                if not pause:
                    await response.write(chunk)
                    sent += len(chunk)
                    continue
                for index in range(len(chunk)):
                    if sent:
                        wait = min(pause, cut_at - time.monotonic())
                        if not await self._pause(wait):
                            end = "stopped"
                        elif wait < pause:
                            end = "cut"
                        if end != "complete":
                            _reset_connection(request)
                            return response
                    await response.write(chunk[index : index + 1])
                    sent += 1
            await response.write_eof()
        except ConnectionResetError:
            end = "client_gone"
        except asyncio.CancelledError:
            # handler_cancellation: the client closed the connection while we waited or wrote.
            end = "client_gone"
            raise
        finally:
            self.request_log.finish(
                seq, sent_bytes=sent, answer_seconds=round(time.monotonic() - started, 3), answer_end=end
            )
        return response

    async def _pause(self, seconds: float) -> bool:
        """Wait `seconds` (at most); False if the emulator began stopping meanwhile."""
        closing = self._closing
        if closing is None:
            await asyncio.sleep(max(0.0, seconds))
            return True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(closing.wait(), max(0.0, seconds))
        return not closing.is_set()

    async def _hang(self) -> None:
        closing = self._closing
        timeout = self.faults.config.hang_seconds
        if closing is None:
            await asyncio.sleep(timeout)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(closing.wait(), timeout)

    # -- admin (no auth; meant for loopback) -------------------------------------------------------------------

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _get_requests(self, request: web.Request) -> web.Response:
        try:
            since = int(request.query.get("since", "0"))
        except ValueError:
            return web.json_response({"error": "since must be an integer"}, status=400)
        entries = self.request_log.entries(action=request.query.get("action"), since=since)
        return web.json_response([entry.as_dict() for entry in entries])

    async def _clear_requests(self, request: web.Request) -> web.Response:
        return web.json_response({"cleared": self.request_log.clear()})

    async def _get_counters(self, request: web.Request) -> web.Response:
        return web.json_response(self.request_log.counters())

    async def _get_faults(self, request: web.Request) -> web.Response:
        current = self.faults.config.model_dump(mode="json")
        # Report the drops still pending rather than the configured number, so a test can see them consumed.
        current["drop_start_response"] = self.faults.drops_left
        return web.json_response(current)

    async def _put_faults(self, request: web.Request) -> web.Response:
        try:
            raw = await request.json()
        except ValueError:
            return web.json_response({"error": "body must be JSON"}, status=400)
        try:
            faults = FaultConfig.model_validate(raw)
        except ValidationError as exc:
            details = json.loads(exc.json(include_url=False, include_input=False))
            return web.json_response({"error": "invalid fault config", "details": details}, status=400)
        self.set_faults(faults)
        log.info("faults replaced: %s", faults.model_dump(mode="json", exclude_defaults=True))
        return web.json_response(faults.model_dump(mode="json"))

    async def _get_instances(self, request: web.Request) -> web.Response:
        return web.json_response([view.as_dict() for view in self.state.instances()])

    async def _console(self, request: web.Request) -> web.Response:
        """What a person does in the DataWorks console (start, stop), or a task failing (fail): not API calls, so
        neither in the request log nor in the API's counts; the instance's console_*_count and failure_count say."""
        try:
            project, file = int(request.match_info["project"]), int(request.match_info["file"])
        except ValueError:
            return web.json_response({"error": "project and file must be integers"}, status=400)
        action = request.match_info["action"]
        try:
            if action == "start":
                view = self.state.console_start(project, file)
            elif action == "stop":
                view = self.state.console_stop(project, file)
            elif action == "fail":
                raw = await request.json() if request.can_read_body else {}
                view = self.state.fail(project, file, ConsoleFailure.model_validate(raw))
            else:
                return web.json_response({"error": f"unknown console action {action!r}: start, stop, fail"}, status=404)
        except ValueError as exc:  # a body that is not JSON, or not a ConsoleFailure
            return web.json_response({"error": "invalid failure", "details": str(exc)[:500]}, status=400)
        except ApiError as err:
            return web.json_response({"error": err.code, "message": err.message}, status=err.http_status)
        log.info("console %s of %s/%s: now %s", action, project, file, view.state)
        return web.json_response(view.as_dict())

    async def _reset_instances(self, request: web.Request) -> web.Response:
        self.state.reset()
        return web.json_response([view.as_dict() for view in self.state.instances()])
