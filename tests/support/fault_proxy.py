"""A fault-injecting HTTP proxy on 127.0.0.1 between boto3 and moto's server.

It adds latency and, for a configurable fraction of calls, answers with AWS throttling (in
the caller's protocol: EC2 query XML, autoscaling query XML, ECS JSON, S3 XML), a 503, or a
connection reset; it can fail every call of chosen operations and drop the first response
of chosen operations after moto has applied them (a lost response).

It also keeps AWS's documented rules that moto does not (``AwsRules``, see
``tests/support/aws_rules.py`` for the AWS page each follows): client-token idempotency of
RunInstances and ECS CreateService (on by default), eventual consistency of new instances and
their tags (a lag, off by default) and per-action token buckets (none by default).
"""

from __future__ import annotations

import http.client
import random
import socket
import struct
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

from tests.support.aws_rules import AwsRules, Reply, RuleBook

__all__ = ["AwsRules", "Faults", "FaultProxy", "operation_of"]

_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "proxy-connection"}


@dataclass
class Faults:
    """What goes wrong: rates are per call; ``ops`` limits the random faults to some calls."""

    latency_s: float = 0.0
    throttle_rate: float = 0.0
    error_rate: float = 0.0  # 503 Service Unavailable
    reset_rate: float = 0.0  # connection reset, request never forwarded
    ops: frozenset[str] | None = None
    fail_ops: frozenset[str] = frozenset()  # always 503
    drop_first: frozenset[str] = frozenset()  # forward, then drop the response, once per op
    fail_regions: frozenset[str] = frozenset()  # every call signed for these regions: 503


@dataclass
class _Call:
    op: str
    service: str
    json: bool
    region: str = "?"


def operation_of(headers: dict[str, str], body: bytes, method: str) -> _Call:
    """Which AWS operation a signed request is, and in which protocol it speaks."""
    auth = headers.get("authorization", "")
    scope = auth.split("Credential=")[1].split(",")[0].split("/") if "Credential=" in auth else []
    region, service = (scope[2], scope[3]) if len(scope) > 3 else ("?", "?")
    target = headers.get("x-amz-target")
    if target:
        return _Call(target.rpartition(".")[2], service, True, region)
    if body and b"Action=" in body:
        action = parse_qs(body.decode("utf-8", "replace")).get("Action", ["?"])[0]
        return _Call(action, service, False, region)
    return _Call(f"{service}:{method}", service, False, region)


def _throttle_body(call: _Call) -> tuple[int, str, bytes]:
    if call.json:
        body = b'{"__type":"ThrottlingException","message":"Rate exceeded"}'
        return 400, "application/x-amz-json-1.1", body
    if call.service == "ec2":
        body = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error>'
                b"<Code>RequestLimitExceeded</Code><Message>Request limit exceeded.</Message>"
                b"</Error></Errors><RequestID>fault-proxy</RequestID></Response>")
        return 400, "text/xml", body
    if call.service == "s3":
        body = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
                b"<Message>Please reduce your request rate.</Message></Error>")
        return 503, "application/xml", body
    body = (b"<ErrorResponse><Error><Type>Sender</Type><Code>Throttling</Code>"
            b"<Message>Rate exceeded</Message></Error><RequestId>fault-proxy</RequestId>"
            b"</ErrorResponse>")
    return 400, "text/xml", body


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        """A client that gave up (a sense deadline, a reset we injected) is not news."""


@dataclass
class FaultProxy:
    """Start with ``start()`` (returns its URL); swap ``faults`` or ``rules`` any time; read
    the counters. ``injected`` also counts the rules: ``idempotent:Op`` (answered from token
    memory), ``mismatch:Op``, ``limit:Op`` (refused by a token bucket) and ``hidden:Op`` (one
    per lagging instance or tag left out of an answer, or a by-id describe refused)."""

    upstream: str
    faults: Faults = field(default_factory=Faults)
    seed: int = 0
    rules: AwsRules = field(default_factory=AwsRules)
    seen: Counter[str] = field(default_factory=Counter)  # calls that reached the proxy
    # the same calls as IAM names them, ``service:Operation`` (e.g. ``ecs:CreateService``)
    actions: Counter[str] = field(default_factory=Counter)
    forwarded: Counter[str] = field(default_factory=Counter)  # calls moto answered
    injected: Counter[str] = field(default_factory=Counter)  # "throttle:Op", "503:Op", ...
    url: str = ""

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._lock = threading.Lock()
        self._dropped: set[str] = set()
        self._server: ThreadingHTTPServer | None = None
        self._book = RuleBook(lambda: self.rules, self._tally)

    def reset(self, faults: Faults | None = None, seed: int = 0,
              rules: AwsRules | None = None) -> None:
        """New faults and rules (``None``: ``AwsRules()``, tokens on); forgets the counters,
        the client tokens, the launch times and the buckets."""
        with self._lock:
            self.faults = faults or Faults()
            self.rules = rules or AwsRules()
            self._book = RuleBook(lambda: self.rules, self._tally)
            self._rng = random.Random(seed)
            self._dropped.clear()
            self.seen.clear()
            self.actions.clear()
            self.forwarded.clear()
            self.injected.clear()

    def start(self) -> str:
        proxy = self

        class Handler(_Handler):
            owner = proxy

        self._server = _QuietServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        return self.url

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def decide(self, call: _Call) -> str:
        """``ok``, ``limit``, ``throttle``, ``503``, ``reset`` or ``drop`` for this call."""
        with self._lock:
            faults = self.faults
            self.seen[call.op] += 1
            self.actions[f"{call.service}:{call.op}"] += 1
            if not self._book.allow(call.op):
                return self._count("limit", call)
            if call.op in faults.fail_ops or call.region in faults.fail_regions:
                return self._count("503", call)
            if call.op in faults.drop_first and call.op not in self._dropped:
                self._dropped.add(call.op)
                return self._count("drop", call)
            if faults.ops is not None and call.op not in faults.ops:
                return "ok"
            draw = self._rng.random()
            for kind, rate in (("throttle", faults.throttle_rate), ("503", faults.error_rate),
                               ("reset", faults.reset_rate)):
                if draw < rate:
                    return self._count(kind, call)
                draw -= rate
            return "ok"

    def _count(self, kind: str, call: _Call) -> str:
        self.injected[f"{kind}:{call.op}"] += 1
        return kind

    def _tally(self, key: str) -> None:
        with self._lock:
            self.injected[key] += 1

    def respond(self, call: _Call, method: str, path: str, headers: dict[str, str],
                body: bytes) -> Reply:
        """The answer under ``rules``: from token memory, a lag error, or moto's (rewritten)."""
        def send() -> Reply:
            reply = self.forward(method, path, headers, body)
            with self._lock:
                self.forwarded[call.op] += 1
            return reply

        return self._book.exchange(call, body, send)

    def forward(self, method: str, path: str, headers: dict[str, str],
                body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
        target = urlparse(self.upstream)
        conn = http.client.HTTPConnection(target.hostname, target.port, timeout=120)
        try:
            conn.request(method, path, body=body,
                         headers={k: v for k, v in headers.items() if k.lower() not in _HOP})
            response = conn.getresponse()
            data = response.read()
            kept = [(k, v) for k, v in response.getheaders() if k.lower() not in _HOP]
            return response.status, kept, data
        finally:
            conn.close()


class _Handler(BaseHTTPRequestHandler):
    owner: FaultProxy
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        call = operation_of(headers, body, self.command)
        verdict = self.owner.decide(call)
        if self.owner.faults.latency_s:
            time.sleep(self.owner.faults.latency_s)
        if verdict == "reset":
            return self._reset()
        if verdict in ("throttle", "limit"):
            return self._reply(*_throttle_body(call))
        if verdict == "503":
            return self._reply(503, "text/html", b"<html><body>Service Unavailable</body></html>")
        status, kept, data = self.owner.respond(call, self.command, self.path,
                                                dict(self.headers), body)
        if verdict == "drop":
            return self._reset()  # moto applied it; the caller never hears back
        self.send_response(status)
        for key, value in kept:
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)
        self.close_connection = True

    def _reply(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
        self.close_connection = True

    def _reset(self) -> None:
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True
        self.connection.close()

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _handle  # noqa: N815 - stdlib names
