"""A cap on request bodies, checked before anything parses them: a declared length above it is refused at once, and
a body sent without one (chunked) is counted as it arrives and refused when it passes the cap."""

from __future__ import annotations

import json

MAX_BODY_BYTES = 1 << 20  # 1 MiB: 1,000 events of the generic format's fields fit with room to spare


class BodyTooLarge(Exception):
    pass


class BodyLimit:
    """ASGI middleware answering 413 with a JSON body for a request body over ``max_bytes``."""

    def __init__(self, app, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(send)
            return
        seen = 0
        too_large = refused = False

        async def counted_receive():
            nonlocal seen, too_large
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    too_large = True
                    raise BodyTooLarge
            return message

        async def guarded_send(message):
            # The app may answer the aborted read itself (FastAPI turns it into "error parsing the body"):
            # whatever it says, the caller hears 413.
            nonlocal refused
            if too_large:
                if not refused:
                    refused = True
                    await self._refuse(send)
                return
            await send(message)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except BodyTooLarge:
            if not refused:
                await self._refuse(send)

    async def _refuse(self, send) -> None:
        body = json.dumps({"detail": f"The request body is larger than {self.max_bytes:,} bytes."}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
