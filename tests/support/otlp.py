"""A loopback OTLP/HTTP metrics receiver: keeps the name of every metric POSTed to
``/v1/metrics`` (protobuf, optionally gzipped), as an OpenTelemetry collector would receive it."""

from __future__ import annotations

import gzip
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

__all__ = ["OtlpReceiver"]


class OtlpReceiver:
    def __init__(self) -> None:
        self.metrics: list[tuple[str, dict[str, str]]] = []  # (name, attributes of a point)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                receiver._keep(self.path, body)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def _keep(self, path: str, body: bytes) -> None:
        from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
            ExportMetricsServiceRequest,
        )

        if path != "/v1/metrics":
            return
        request = ExportMetricsServiceRequest.FromString(body)
        for resource in request.resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    kind = metric.WhichOneof("data")
                    points = getattr(metric, kind).data_points if kind else []
                    for point in points or [None]:
                        attrs = {a.key: a.value.string_value for a in point.attributes} \
                            if point is not None else {}
                        self.metrics.append((metric.name, attrs))

    def names(self) -> set[str]:
        return {name for name, _ in list(self.metrics)}

    def attributes(self, name: str) -> list[dict[str, str]]:
        return [attrs for n, attrs in list(self.metrics) if n == name]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(2)
