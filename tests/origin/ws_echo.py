#!/usr/bin/python3
"""A WebSocket echo server (Debian's python3-websockets) for
tests/integration/upgrades.sh.

usage: ws_echo.py PORT LOG

Echoes every message back. "close-please" makes the server close the
connection (code 1000, reason "bye"). Each line of LOG is one event as JSON:
["open", PATH, UPGRADE_HEADER], ["closed", PATH, CODE] when the client closed
or the connection ended.
"""
import asyncio
import json
import sys

import websockets


def log(event):
    with open(sys.argv[2], "a") as f:
        f.write(json.dumps(event) + "\n")


async def echo(ws, path=None):
    path = getattr(ws, "path", path)
    log(["open", path, ws.request_headers.get("Upgrade", "")])
    try:
        async for msg in ws:
            if msg == "close-please":
                await ws.close(1000, "bye")
                break
            await ws.send(msg)
    except websockets.ConnectionClosed:
        pass
    log(["closed", path, ws.close_code])


async def main():
    async with websockets.serve(echo, "127.0.0.1", int(sys.argv[1]), max_size=None):
        await asyncio.Future()


if __name__ == "__main__":
    asyncio.run(main())
