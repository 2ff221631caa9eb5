"""reconciler.outgoing: what may expand into a URL, which URLs are called, redirects, logs."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from reconciler.outgoing import expand_allowed, post, shown, url_problem


def test_only_reconciler_variables_and_listed_names_expand():
    env = {"RECONCILER_TOKEN": "t1", "PAGER": "p", "AIRFLOW__API_AUTH__JWT_SECRET": "s3cr3t"}
    url, problems = expand_allowed("https://x/${RECONCILER_TOKEN}/${PAGER}", env, ["PAGER"])
    assert url == "https://x/t1/p" and problems == []
    url, problems = expand_allowed("https://x/?k=${AIRFLOW__API_AUTH__JWT_SECRET}", env)
    assert "s3cr3t" not in url and problems and "may not be expanded" in problems[0]
    _, problems = expand_allowed("${RECONCILER_UNSET}", env)
    assert problems == ["environment variable RECONCILER_UNSET is not set"]


@pytest.mark.parametrize(("url", "ok"), [
    ("https://hooks.example.com/x", True), ("http://127.0.0.1:8080/x", True),
    ("http://[::1]/x", True), ("http://localhost/x", True),
    ("http://hooks.example.com/x", False), ("ftp://127.0.0.1/x", False),
    ("file:///etc/passwd", False), ("https:///nohost", False),
])
def test_webhooks_are_https_or_loopback_http(url, ok):
    assert (url_problem(url) is None) == ok


def test_a_logged_url_has_no_credentials_or_query():
    assert shown("https://user:pw@h.example.com:8443/p/a?token=abc") == \
        "https://h.example.com:8443/p/a?..."


class _Redirect(BaseHTTPRequestHandler):
    target = ""
    hits: list[str] = []

    def do_POST(self) -> None:
        self.hits.append(self.path)
        if self.path == "/hop":
            self.send_response(302)
            self.send_header("Location", self.target)
            self.end_headers()
            return
        self.send_response(204)
        self.end_headers()

    do_GET = do_POST  # noqa: N815 - a 302 turns the POST into a GET

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Redirect)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def test_a_redirect_to_the_same_host_is_followed_and_to_another_host_refused(server):
    _Redirect.hits = []
    _Redirect.target = f"{server}/landed"
    assert post(f"{server}/hop", b"{}", 5) == 204
    assert _Redirect.hits == ["/hop", "/landed"]
    _Redirect.target = "http://localhost:9/elsewhere"  # another host (and port)
    with pytest.raises(Exception, match="another host refused"):
        post(f"{server}/hop", b"{}", 5)


def test_a_url_that_is_not_allowed_is_never_called():
    with pytest.raises(ValueError, match="only https"):
        post("http://hooks.example.com/x", b"{}", 5)
