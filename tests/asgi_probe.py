"""Call an ASGI app with a declared body size and count how often it reads the body: the
way to prove an oversize request is refused from its Content-Length alone."""

from __future__ import annotations

from collections.abc import MutableMapping
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI


@dataclass
class Probe:
    reads: int = 0
    sent: list[MutableMapping[str, Any]] = field(default_factory=list)

    @property
    def status(self) -> int:
        return int(self.sent[0]["status"])

    @property
    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.sent[1:])


async def post_declaring(
    app: FastAPI,
    path: str,
    *,
    content_length: int,
    content_type: str,
    query: bytes = b"",
    headers: list[tuple[bytes, bytes]] | None = None,
    chunk: bytes = b"{}",
) -> Probe:
    """POST to ``path`` with a ``Content-Length`` of ``content_length``; every read gets
    ``chunk`` (as if the body were that). Returns what was sent back and how many reads."""
    probe = Probe()

    async def receive() -> MutableMapping[str, Any]:
        probe.reads += 1
        return {"type": "http.request", "body": chunk, "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        probe.sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": query,
        "headers": [
            (b"host", b"wahub.test"),
            *(headers or []),
            (b"content-type", content_type.encode()),
            (b"content-length", str(content_length).encode()),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("wahub.test", 80),
        "state": {},
    }
    await app(scope, receive, send)
    return probe
