"""AWS behaviours moto's server does not keep, enforced by the fault proxy in front of it.

Each rule follows a documented AWS page (cited where it is enforced):

- EC2 API reference, "Ensuring idempotency in Amazon EC2 API requests"
  https://docs.aws.amazon.com/ec2/latest/devguide/ec2-api-idempotency.html
- ECS API reference, "Ensuring idempotency" (CreateService ``clientToken``)
  https://docs.aws.amazon.com/AmazonECS/latest/APIReference/ECS_Idempotency.html
- EC2 API reference, "Eventual consistency in the Amazon EC2 API"
  https://docs.aws.amazon.com/ec2/latest/devguide/eventual-consistency.html
- EC2 API reference, "Request throttling for the Amazon EC2 API"
  https://docs.aws.amazon.com/ec2/latest/devguide/ec2-api-throttling.html
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import parse_qs, parse_qsl

__all__ = ["AwsRules", "Reply", "RuleBook"]

Reply = tuple[int, list[tuple[str, str]], bytes]  # status, headers, body


@dataclass
class AwsRules:
    """AWS behaviours moto lacks; each field cites its AWS page."""

    # "Ensuring idempotency in Amazon EC2 API requests" (RunInstances ``ClientToken``) and the
    # ECS "Ensuring idempotency" page (CreateService ``clientToken``): a repeated token with the
    # same parameters gets the first response and changes nothing; with other parameters it is
    # refused; tokens are per region; a RunInstances token outlives its instance by >= 24 h.
    client_tokens: bool = True
    # "Eventual consistency in the Amazon EC2 API": right after RunInstances, DescribeInstances
    # may not list the instance and describing it by id answers InvalidInstanceID.NotFound.
    listing_lag_s: float = 0.0
    # The same page: tags can lag their resource; DescribeTags and ``tag:`` filters miss them.
    tag_lag_s: float = 0.0
    # "Request throttling for the Amazon EC2 API": a token bucket per action; an empty bucket
    # answers RequestLimitExceeded (ThrottlingException for JSON protocols), nothing applied.
    rate_limits: dict[str, tuple[float, int]] = field(default_factory=dict)
    clock: Callable[[], float] = time.monotonic  # tests pass a FakeClock's monotonic


class CallLike(Protocol):
    op: str
    service: str
    json: bool
    region: str


@dataclass
class _Bucket:
    level: float
    at: float


@dataclass(frozen=True)
class _TokenKey:
    region: str
    op: str
    token: str


def _digest(call: CallLike, body: bytes) -> tuple[str, str] | None:
    """(token, digest of every other parameter) of a create that carries a client token."""
    if call.op == "RunInstances" and call.service == "ec2" and not call.json:
        pairs = parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
        token = next((v for k, v in pairs if k == "ClientToken"), "")
        rest = sorted((k, v) for k, v in pairs if k != "ClientToken")
        return (token, hashlib.sha256(repr(rest).encode()).hexdigest()) if token else None
    if call.op == "CreateService" and call.service == "ecs" and call.json:
        params = json.loads(body or b"{}")
        token = str(params.pop("clientToken", "") or "")
        canon = json.dumps(params, sort_keys=True)
        return (token, hashlib.sha256(canon.encode()).hexdigest()) if token else None
    return None


def ec2_error(code: str, message: str) -> Reply:
    body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error><Code>{code}'
            f"</Code><Message>{message}</Message></Error></Errors>"
            "<RequestID>fault-proxy</RequestID></Response>").encode()
    return 400, [("Content-Type", "text/xml")], body


def json_error(code: str, message: str) -> Reply:
    body = json.dumps({"__type": code, "message": message}).encode()
    return 400, [("Content-Type", "application/x-amz-json-1.1")], body


def _mismatch(call: CallLike) -> Reply:
    if call.json:
        return json_error("InvalidParameterException",
                          "Creation of service was not idempotent: this clientToken was used "
                          "with other parameters.")
    return ec2_error("IdempotentParameterMismatch",
                     "The client token you have provided is associated with a resource that "
                     "was created with other parameters.")


class RuleBook:
    """The proxy's memory for the rules: client tokens, launch times, token buckets."""

    def __init__(self, rules: Callable[[], AwsRules], count: Callable[[str], None]) -> None:
        self._rules = rules
        self._count = count
        self._lock = threading.Lock()
        self._tokens: dict[_TokenKey, tuple[str, Reply]] = {}
        self._inflight: dict[_TokenKey, threading.Lock] = {}
        self._launched: dict[str, float] = {}
        self._buckets: dict[str, _Bucket] = {}

    # -- request throttling ----------------------------------------------------------------

    def allow(self, op: str) -> bool:
        """Take one token from the action's bucket ("Request throttling for the Amazon EC2
        API": buckets refill at a fixed rate up to their size); False when it is empty."""
        rules = self._rules()
        if op not in rules.rate_limits:
            return True
        refill, size = rules.rate_limits[op]
        now = rules.clock()
        with self._lock:
            bucket = self._buckets.setdefault(op, _Bucket(float(size), now))
            bucket.level = min(float(size), bucket.level + (now - bucket.at) * refill)
            bucket.at = now
            if bucket.level < 1.0:
                return False
            bucket.level -= 1.0
            return True

    # -- one exchange ----------------------------------------------------------------------

    def exchange(self, call: CallLike, body: bytes, send: Callable[[], Reply]) -> Reply:
        """Answer one call: from token memory, with a lag error, or by ``send`` (forwarding),
        rewriting what the caller must not see yet."""
        rules = self._rules()
        if call.op == "RunInstances" and not call.json:
            send = self._launching(send)
        found = _digest(call, body) if rules.client_tokens else None
        if found is not None:
            return self._idempotent(_TokenKey(call.region, call.op, found[0]), found[1], call,
                                    send)
        if call.op == "DescribeInstances" and not call.json:
            return self._describe_instances(body, send)
        if call.op == "DescribeTags" and not call.json:
            return self._describe_tags(send)
        return send()

    def _idempotent(self, key: _TokenKey, digest: str, call: CallLike,
                    send: Callable[[], Reply]) -> Reply:
        """EC2 "Ensuring idempotency": the same token and parameters get the first response
        without launching anything (even after the instance was terminated: a token stays
        valid >= 24 h after termination); other parameters get IdempotentParameterMismatch.
        ECS "Ensuring idempotency" says the same of CreateService. Tokens are per region.
        Concurrent twins wait for the first so that only one is forwarded."""
        with self._lock:
            gate = self._inflight.setdefault(key, threading.Lock())
        with gate:
            known = self._tokens.get(key)
            if known is not None:
                if known[0] != digest:
                    self._count(f"mismatch:{call.op}")
                    return _mismatch(call)
                self._count(f"idempotent:{call.op}")
                return known[1]
            reply = send()  # a dropped reply was still applied: remember it before dropping
            if reply[0] == 200:
                self._tokens[key] = (digest, reply)
            return reply

    # -- eventual consistency ----------------------------------------------------------------

    def _launching(self, send: Callable[[], Reply]) -> Callable[[], Reply]:
        """``send`` that notes the launch time of each instance moto made (not of replays)."""
        def sent() -> Reply:
            reply = send()
            if _rewritable(reply):
                root = ET.fromstring(reply[2])
                ns, now = _ns(root), self._rules().clock()
                with self._lock:
                    for iid in root.iterfind(f"{ns}instancesSet/{ns}item/{ns}instanceId"):
                        self._launched[iid.text or ""] = now
            return reply

        return sent

    def _lagging(self, lag_s: float) -> set[str]:
        if lag_s <= 0:
            return set()
        now = self._rules().clock()
        with self._lock:
            return {iid for iid, at in self._launched.items() if now - at < lag_s}

    def _describe_instances(self, body: bytes, send: Callable[[], Reply]) -> Reply:
        """Per "Eventual consistency in the Amazon EC2 API", a new instance is missing from
        DescribeInstances, described by id it is InvalidInstanceID.NotFound; while its tags lag,
        a ``tag:``/``tag-key`` filter cannot match it either."""
        rules = self._rules()
        params = parse_qs(body.decode("utf-8", "replace"))
        unlisted = self._lagging(rules.listing_lag_s)
        named = [v for k, vs in params.items() if k.startswith("InstanceId.") for v in vs]
        missing = [i for i in named if i in unlisted]
        if missing:
            self._count("hidden:DescribeInstances")
            return ec2_error("InvalidInstanceID.NotFound",
                             f"The instance ID '{missing[0]}' does not exist")
        by_tag = any(v[0].startswith("tag:") or v[0] == "tag-key" for k, v in params.items()
                     if k.startswith("Filter.") and k.endswith(".Name"))
        hidden = unlisted | (self._lagging(rules.tag_lag_s) if by_tag else set())
        reply = send()
        if hidden and _rewritable(reply):
            return self._strip(reply, hidden, _strip_instances, "DescribeInstances")
        return reply

    def _describe_tags(self, send: Callable[[], Reply]) -> Reply:
        """The same page: tags of a new instance are missing from DescribeTags for a while."""
        hidden = self._lagging(self._rules().tag_lag_s)
        reply = send()
        if hidden and _rewritable(reply):
            return self._strip(reply, hidden, _strip_tags, "DescribeTags")
        return reply

    def _strip(self, reply: Reply, hidden: set[str],
               how: Callable[[ET.Element, str, set[str]], int], op: str) -> Reply:
        root = ET.fromstring(reply[2])
        ns = _ns(root)
        removed = how(root, ns, hidden)
        if not removed:
            return reply
        for _ in range(removed):
            self._count(f"hidden:{op}")
        data = ET.tostring(root, encoding="utf-8", xml_declaration=True,
                           default_namespace=ns[1:-1] or None)
        return reply[0], reply[1], data


def _rewritable(reply: Reply) -> bool:
    return reply[0] == 200 and reply[2].lstrip().startswith(b"<")


def _ns(root: ET.Element) -> str:
    """``{namespace}`` of moto's EC2 answers (empty when there is none)."""
    return root.tag[: root.tag.index("}") + 1] if root.tag.startswith("{") else ""


def _strip_instances(root: ET.Element, ns: str, hidden: set[str]) -> int:
    removed = 0
    for rset in root.iterfind(f"{ns}reservationSet"):
        for reservation in list(rset):
            for iset in reservation.iterfind(f"{ns}instancesSet"):
                gone = [i for i in iset if i.findtext(f"{ns}instanceId") in hidden]
                for item in gone:
                    iset.remove(item)
                removed += len(gone)
                if gone and len(iset) == 0:
                    rset.remove(reservation)  # AWS never lists an empty reservation
    return removed


def _strip_tags(root: ET.Element, ns: str, hidden: set[str]) -> int:
    removed = 0
    for tset in root.iterfind(f"{ns}tagSet"):
        for item in list(tset):
            if item.findtext(f"{ns}resourceId") in hidden:
                tset.remove(item)
                removed += 1
    return removed
