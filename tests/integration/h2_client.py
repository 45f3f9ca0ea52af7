#!/usr/bin/python3
"""h2_client.py - a raw HTTP/2 (h2c, prior knowledge) client for tern's tests,
on python3-h2, for what curl cannot do.

    h2_client.py --port PORT reset PATH [--after-ms N]
        sends GET PATH, waits N ms (default 300) and resets the stream
        (RST_STREAM CANCEL); prints "reset sent", then what came back on
        the connection in the next 500 ms (frames by type).
    h2_client.py --port PORT get PATH [--header name:value ...]
        one GET; prints "status N" and "goaway LAST_STREAM_ID ERROR" when a
        GOAWAY came, "reset ERROR" when the stream was reset.
"""
import argparse
import socket
import sys
import time

import h2.config
import h2.connection
import h2.events


def connect(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    c = h2.connection.H2Connection(config=h2.config.H2Configuration(
        client_side=True, header_encoding="utf-8", validate_outbound_headers=False, normalize_outbound_headers=False))
    c.initiate_connection()
    s.sendall(c.data_to_send())
    return s, c


def request(c, port, path, extra=()):
    sid = c.get_next_available_stream_id()
    hdrs = [(":method", "GET"), (":path", path), (":scheme", "http"), (":authority", "127.0.0.1:%d" % port)]
    hdrs += list(extra)
    c.send_headers(sid, hdrs, end_stream=True)
    return sid


def pump(s, c, until, deadline):
    """Reads events until until(event) is true or the deadline passes."""
    out = []
    s.settimeout(0.05)
    while time.time() < deadline:
        try:
            data = s.recv(65536)
        except socket.timeout:
            continue
        if not data:
            out.append("closed")
            break
        for ev in c.receive_data(data):
            out.append(ev)
            if until(ev):
                s.sendall(c.data_to_send())
                return out
        s.sendall(c.data_to_send())
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("mode", choices=["reset", "get"])
    ap.add_argument("path")
    ap.add_argument("--after-ms", type=int, default=300)
    ap.add_argument("--header", action="append", default=[])
    a = ap.parse_args()
    s, c = connect(a.port)
    extra = [tuple(h.split(":", 1)) for h in a.header]
    sid = request(c, a.port, a.path, extra)
    s.sendall(c.data_to_send())
    if a.mode == "reset":
        pump(s, c, lambda ev: False, time.time() + a.after_ms / 1000.0)
        c.reset_stream(sid, error_code=8)  # CANCEL
        s.sendall(c.data_to_send())
        print("reset sent", flush=True)
        evs = pump(s, c, lambda ev: False, time.time() + 0.5)
        print(" ".join(type(e).__name__ if not isinstance(e, str) else e for e in evs))
        return 0
    done = lambda ev: isinstance(ev, (h2.events.StreamEnded, h2.events.StreamReset))
    evs = []
    deadline = time.time() + 20
    while time.time() < deadline:
        evs += pump(s, c, done, deadline)
        if any(done(e) for e in evs if not isinstance(e, str)) or "closed" in evs:
            break
    for e in evs:
        if isinstance(e, h2.events.ResponseReceived):
            print("status %s" % dict(e.headers).get(":status"))
        elif isinstance(e, h2.events.ConnectionTerminated):
            print("goaway %d %d" % (e.last_stream_id, e.error_code))
        elif isinstance(e, h2.events.StreamReset):
            print("reset %d" % e.error_code)
    sys.stdout.flush()
    # GOAWAY may come after the stream ended: read what is left briefly
    for e in pump(s, c, lambda ev: isinstance(ev, h2.events.ConnectionTerminated), time.time() + 1):
        if isinstance(e, h2.events.ConnectionTerminated):
            print("goaway %d %d" % (e.last_stream_id, e.error_code))
    return 0


if __name__ == "__main__":
    sys.exit(main())
