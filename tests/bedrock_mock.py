#!/usr/bin/env python3
"""A Bedrock runtime mock that verifies AWS SigV4 the way AWS does.

Usage: python3 tests/bedrock_mock.py PORT

Prints ``READY`` on stdout once it listens on 127.0.0.1:PORT. Needs ``botocore`` (see
``.ci/run``). Every request to the Bedrock API must be SigV4-signed with the test credential
below; the mock recomputes the signature with botocore's ``SigV4Auth`` over the request exactly
as received (raw, still percent-encoded path, so a model id ``…-v1%3A0`` is double-encoded in
the canonical URI like AWS does; only the headers listed in ``SignedHeaders``; the SHA-256 of the
body) and answers:

* 403 ``{"message": "signature mismatch", "reason": "…"}`` when anything does not verify
  (wrong key id, scope, clock skew over 5 minutes, unsigned ``host``/``x-amz-date``, a missing or
  unsigned session token when one is configured, a wrong ``x-amz-content-sha256``, a different
  signature);
* 403 ``{"message": "proxy key leaked upstream"}`` when a header, the path or the query contains
  ``lk_`` (a Latchkey proxy key must never reach the provider);
* otherwise a Bedrock-shaped answer:
  ``POST /model/{id}/invoke`` -> Anthropic Messages JSON (plus Bedrock's token-count headers),
  ``POST /model/{id}/converse`` -> Converse JSON,
  ``POST /model/{id}/invoke-with-response-stream`` and ``…/converse-stream`` -> an
  ``application/vnd.amazon.eventstream`` body that boto3 parses;
  any other path -> 404.

Control endpoints (not signed, not part of Bedrock):
``GET /_mock/requests`` lists what arrived (method, raw path, decoded model id, headers, body,
whether the signature verified); ``DELETE /_mock/requests`` clears the list.

Environment overrides: ``MOCK_ACCESS_KEY_ID`` (default ``AKIDLATCHKEYTEST``),
``MOCK_SECRET_ACCESS_KEY`` (default ``TEST_SECRET`` below), ``MOCK_SESSION_TOKEN`` (when set, the
request must carry and sign it), ``MOCK_REGION`` (``us-east-1``), ``MOCK_SERVICE`` (``bedrock``).
"""

import base64
import binascii
import datetime
import hashlib
import hmac
import json
import os
import re
import struct
import sys
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest, HTTPHeaders
from botocore.credentials import Credentials

TEST_ACCESS_KEY_ID = "AKIDLATCHKEYTEST"
TEST_SECRET = "LatchkeyTestSecret/0123456789+abcdefghijKLMN"

ACCESS_KEY_ID = os.environ.get("MOCK_ACCESS_KEY_ID", TEST_ACCESS_KEY_ID)
SECRET = os.environ.get("MOCK_SECRET_ACCESS_KEY", TEST_SECRET)
SESSION_TOKEN = os.environ.get("MOCK_SESSION_TOKEN") or None
REGION = os.environ.get("MOCK_REGION", "us-east-1")
SERVICE = os.environ.get("MOCK_SERVICE", "bedrock")
MAX_SKEW = datetime.timedelta(minutes=5)

AUTH_RE = re.compile(
    r"^AWS4-HMAC-SHA256 Credential=([^/,\s]+)/(\d{8})/([^/,\s]+)/([^/,\s]+)/aws4_request,\s*"
    r"SignedHeaders=([a-z0-9;\-]+),\s*Signature=([0-9a-f]{64})$"
)
MODEL_RE = re.compile(
    r"^/model/([^/]+)/(invoke|converse|invoke-with-response-stream|converse-stream)$"
)

INVOKE_RESPONSE = {
    "content": [{"type": "text", "text": "hi"}],
    "usage": {"input_tokens": 5, "output_tokens": 2},
}
CONVERSE_RESPONSE = {
    "output": {"message": {"role": "assistant", "content": [{"text": "hi"}]}},
    "usage": {"inputTokens": 5, "outputTokens": 2, "totalTokens": 7},
    "stopReason": "end_turn",
}

_log_lock = threading.Lock()
_log = []


class Mismatch(Exception):
    pass


def verify(method, raw_target, headers, body):
    """Raises Mismatch unless the request carries a valid SigV4 signature."""
    auth = headers.get("authorization")
    if not auth:
        raise Mismatch("no Authorization header")
    m = AUTH_RE.match(auth.strip())
    if not m:
        raise Mismatch("malformed Authorization header")
    key_id, scope_date, region, service, signed_names, signature = m.groups()
    if key_id != ACCESS_KEY_ID:
        raise Mismatch("unknown access key id")
    if region != REGION or service != SERVICE:
        raise Mismatch(f"credential scope {region}/{service}, expected {REGION}/{SERVICE}")
    amz_date = headers.get("x-amz-date")
    if not amz_date:
        raise Mismatch("no x-amz-date header")
    try:
        when = datetime.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(
            tzinfo=datetime.timezone.utc
        )
    except ValueError:
        raise Mismatch("malformed x-amz-date") from None
    if abs(datetime.datetime.now(datetime.timezone.utc) - when) > MAX_SKEW:
        raise Mismatch("x-amz-date is more than 5 minutes off")
    if amz_date[:8] != scope_date:
        raise Mismatch("x-amz-date and the credential scope disagree")
    names = signed_names.split(";")
    if names != sorted(names) or "host" not in names or "x-amz-date" not in names:
        raise Mismatch("SignedHeaders must be sorted and include host and x-amz-date")
    if SESSION_TOKEN is not None:
        if headers.get("x-amz-security-token") != SESSION_TOKEN:
            raise Mismatch("missing or wrong x-amz-security-token")
        if "x-amz-security-token" not in names:
            raise Mismatch("x-amz-security-token is not signed")
    declared = headers.get("x-amz-content-sha256")
    if declared is not None and declared != hashlib.sha256(body).hexdigest():
        raise Mismatch("x-amz-content-sha256 does not match the body")

    signed = HTTPHeaders()
    for name in names:
        values = headers.get_all(name)
        if not values:
            raise Mismatch(f"signed header {name} is missing")
        for v in values:
            signed[name] = v
    # The raw request target, untouched: botocore derives the canonical URI (normalized, then
    # percent-encoded once more) and the canonical query from it, as AWS does on its side.
    request = AWSRequest(
        method=method, url="http://" + headers.get("host") + raw_target, headers=signed, data=body
    )
    request.context["timestamp"] = amz_date
    signer = SigV4Auth(Credentials(ACCESS_KEY_ID, SECRET, SESSION_TOKEN), SERVICE, REGION)
    canonical = signer.canonical_request(request)
    expected = signer.signature(signer.string_to_sign(request, canonical), request)
    if not hmac.compare_digest(expected, signature):
        raise Mismatch("signature differs")


def _event(headers, payload):
    """One application/vnd.amazon.eventstream message."""
    encoded = b""
    for name, value in headers.items():
        n, v = name.encode(), value.encode()
        encoded += struct.pack(">B", len(n)) + n + b"\x07" + struct.pack(">H", len(v)) + v
    total = 12 + len(encoded) + len(payload) + 4
    prelude = struct.pack(">II", total, len(encoded))
    prelude += struct.pack(">I", binascii.crc32(prelude) & 0xFFFFFFFF)
    message = prelude + encoded + payload
    return message + struct.pack(">I", binascii.crc32(message) & 0xFFFFFFFF)


def _stream(events):
    return b"".join(
        _event(
            {":event-type": kind, ":content-type": "application/json", ":message-type": "event"},
            json.dumps(payload).encode(),
        )
        for kind, payload in events
    )


def invoke_stream_body():
    anthropic_events = [
        {
            "type": "message_start",
            "message": {
                "id": "msg_mock",
                "type": "message",
                "role": "assistant",
                "content": [],
                "model": "mock",
                "stop_reason": None,
                "usage": {"input_tokens": 5, "output_tokens": 1},
            },
        },
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "hi"}},
        {"type": "content_block_stop", "index": 0},
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": None},
            "usage": {"output_tokens": 2},
        },
        {
            "type": "message_stop",
            "amazon-bedrock-invocationMetrics": {
                "inputTokenCount": 5,
                "outputTokenCount": 2,
                "invocationLatency": 10,
                "firstByteLatency": 5,
            },
        },
    ]
    return _stream(
        ("chunk", {"bytes": base64.b64encode(json.dumps(e).encode()).decode()})
        for e in anthropic_events
    )


def converse_stream_body():
    return _stream(
        [
            ("messageStart", {"role": "assistant"}),
            ("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "hi"}}),
            ("contentBlockStop", {"contentBlockIndex": 0}),
            ("messageStop", {"stopReason": "end_turn"}),
            (
                "metadata",
                {
                    "usage": {"inputTokens": 5, "outputTokens": 2, "totalTokens": 7},
                    "metrics": {"latencyMs": 10},
                },
            ),
        ]
    )


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # keep test output quiet
        pass

    def _read_body(self):
        if "chunked" in (self.headers.get("transfer-encoding") or "").lower():
            body = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return body
                body += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("content-length") or 0))

    def _send(self, status, body, content_type="application/json", extra=()):
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(body)))
        self.send_header("x-amzn-requestid", str(uuid.uuid4()))
        for name, value in extra:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/_mock/requests":
            with _log_lock:
                return self._send(200, list(_log))
        self._handle()

    def do_DELETE(self):
        if self.path == "/_mock/requests":
            with _log_lock:
                _log.clear()
            return self._send(200, {"cleared": True})
        self._handle()

    def do_POST(self):
        self._handle()

    def do_PUT(self):
        self._handle()

    def _handle(self):
        body = self._read_body()
        target = self.path
        path = urlsplit(target).path
        model = MODEL_RE.match(path)
        record = {
            "method": self.command,
            "path": target,
            "model_id": unquote(model.group(1)) if model else None,
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "body": body.decode("utf-8", "replace"),
            "verified": False,
        }
        with _log_lock:
            _log.append(record)

        leaked = "lk_" in target or any("lk_" in v for v in self.headers.values())
        if leaked:
            return self._send(403, {"message": "proxy key leaked upstream"})
        try:
            verify(self.command, target, self.headers, body)
        except Mismatch as e:
            return self._send(403, {"message": "signature mismatch", "reason": str(e)})
        record["verified"] = True

        if not model or self.command != "POST":
            return self._send(404, {"message": "UnknownOperationException"})
        operation = model.group(2)
        if operation == "invoke":
            tokens = [
                ("x-amzn-bedrock-input-token-count", "5"),
                ("x-amzn-bedrock-output-token-count", "2"),
            ]
            return self._send(200, INVOKE_RESPONSE, extra=tokens)
        if operation == "converse":
            return self._send(200, CONVERSE_RESPONSE)
        stream = invoke_stream_body() if operation == "invoke-with-response-stream" else (
            converse_stream_body()
        )
        return self._send(200, stream, content_type="application/vnd.amazon.eventstream")


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: bedrock_mock.py PORT")
    server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
    server.daemon_threads = True
    print("READY", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
