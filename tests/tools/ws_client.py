#!/usr/bin/python3
"""A WebSocket client (Debian's python3-websockets) for
tests/integration/upgrades.sh.

usage: ws_client.py URL MODE

MODE echo:   sends "hello" and a 5 MB binary message, checks both come back
             unchanged, then closes (code 1000); prints "echo ok <sha256>"
MODE server-close: sends "close-please"; prints "closed by server <code>
             <reason>" when the server closes
Anything unexpected prints "error: ..." and exits 1.
"""
import asyncio
import hashlib
import os
import sys

import websockets


async def run(url, mode):
    async with websockets.connect(url, max_size=None, open_timeout=5, close_timeout=5) as ws:
        if mode == "echo":
            await ws.send("hello")
            got = await asyncio.wait_for(ws.recv(), 5)
            if got != "hello":
                raise SystemExit("error: text echo %r" % got)
            big = os.urandom(5 * 1024 * 1024)
            await ws.send(big)
            got = await asyncio.wait_for(ws.recv(), 20)
            if got != big:
                raise SystemExit("error: binary echo differs (%d bytes back)" % len(got))
            await ws.close(1000, "done")
            print("echo ok", hashlib.sha256(got).hexdigest()[:16])
        elif mode == "server-close":
            await ws.send("close-please")
            try:
                await asyncio.wait_for(ws.recv(), 5)
                raise SystemExit("error: a message instead of the close")
            except websockets.ConnectionClosed as e:
                print("closed by server", e.rcvd.code if e.rcvd else None, e.rcvd.reason if e.rcvd else None)


try:
    asyncio.run(run(sys.argv[1], sys.argv[2]))
except websockets.InvalidStatusCode as e:
    print("error: status", e.status_code)
    sys.exit(1)
except (OSError, asyncio.TimeoutError, websockets.WebSocketException) as e:
    print("error:", type(e).__name__, e)
    sys.exit(1)
