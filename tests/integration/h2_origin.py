#!/usr/bin/env python3
"""An HTTP/2 origin (h2c, prior knowledge) on python3-h2 for upstream_h2.sh.

Every answer carries x-conn (the connection's number, from 1) and
x-stream (its stream id). The query steers it:
  delay_ms=N     answer after N ms
  reset=1        reset the stream (RST_STREAM INTERNAL_ERROR) instead
  close=1        close the connection (GOAWAY, then the socket) instead
  trailers=1     end the response with trailers (x-checksum: the body's sha256)
  bytes=N        answer with N bytes (else: the request body echoed; for an
                 empty body, a JSON line with method, path and headers)
  status=N       answer with status N
  cc=V           answer with cache-control: V
  etag=E         answer with etag: "E"; a request whose if-none-match is
                 that gets 304
  goaway_ms=N    after N ms send GOAWAY (NO_ERROR) whose last stream is this
                 one, then answer it; streams above it are never answered,
                 and the connection closes when the client closes it
Answers carry x-body-sha256 and x-body-len of the request body.
With --log FILE, every request (its stream ended, or refused by a GOAWAY)
appends a JSON line: conn, stream, method, path, authority, headers,
body_len, body_sha256, answered (false for those above a GOAWAY).

  h2_origin.py --port PORT [--max-streams N] [--log FILE]
"""
import argparse
import asyncio
import hashlib
import json
import urllib.parse

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.settings
import hyperframe.frame

CONNS = 0
LOG = None


class Conn:
    def __init__(self, reader, writer, max_streams):
        global CONNS
        CONNS += 1
        self.n = CONNS
        self.r, self.w = reader, writer
        cfg = h2.config.H2Configuration(client_side=False, header_encoding="utf-8")
        self.h2 = h2.connection.H2Connection(config=cfg)
        self.streams = {}
        self.flow = {}  # stream id -> event set when the window opens
        self.max_streams = max_streams
        self.closed = False
        self.last = None  # the last stream of our GOAWAY

    def flush(self):
        data = self.h2.data_to_send()
        if data and not self.closed:
            self.w.write(data)

    async def run(self):
        self.h2.initiate_connection()
        self.h2.update_settings({h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: self.max_streams})
        self.flush()
        try:
            while not self.closed:
                data = await self.r.read(65536)
                if not data:
                    break
                for ev in self.h2.receive_data(data):
                    self.event(ev)
                self.flush()
        except Exception:
            pass
        self.closed = True
        self.w.close()

    def event(self, ev):
        if isinstance(ev, h2.events.RequestReceived):
            self.streams[ev.stream_id] = {"headers": dict(ev.headers), "body": bytearray()}
        elif isinstance(ev, h2.events.DataReceived):
            st = self.streams.get(ev.stream_id)
            if st is not None:
                st["body"] += ev.data
            self.h2.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
        elif isinstance(ev, h2.events.StreamEnded):  # also after a request without body
            asyncio.ensure_future(self.answer(ev.stream_id))
        elif isinstance(ev, (h2.events.WindowUpdated,)):
            for e in list(self.flow.values()):
                e.set()
        elif isinstance(ev, h2.events.StreamReset):
            self.streams.pop(ev.stream_id, None)
            e = self.flow.pop(ev.stream_id, None)
            if e:
                e.set()

    async def send_body(self, sid, body, end):
        while body:
            if sid not in self.streams or self.closed:
                return False
            n = min(len(body), self.h2.local_flow_control_window(sid), self.h2.max_outbound_frame_size)
            if n <= 0:
                e = self.flow[sid] = asyncio.Event()
                self.flush()
                await e.wait()
                continue
            last = end and n == len(body)
            self.h2.send_data(sid, body[:n], end_stream=last)
            body = body[n:]
            self.flush()
            if last:
                return True
            await self.w.drain()
        if end:
            self.h2.end_stream(sid)
        return True

    def log(self, sid, st, answered):
        if LOG is None:
            return
        hd, body = st["headers"], bytes(st["body"])
        rec = {"conn": self.n, "stream": sid, "method": hd.get(":method"), "path": hd.get(":path"),
               "authority": hd.get(":authority"), "headers": {k: v for k, v in hd.items() if not k.startswith(":")},
               "body_len": len(body), "body_sha256": hashlib.sha256(body).hexdigest(), "answered": answered}
        with open(LOG, "a") as f:
            f.write(json.dumps(rec) + "\n")

    async def answer(self, sid):
        st = self.streams.get(sid)
        if st is None:
            return
        hd = st["headers"]
        q = urllib.parse.parse_qs(urllib.parse.urlsplit(hd.get(":path", "/")).query)
        arg = lambda k: q.get(k, [None])[0]
        if arg("goaway_ms"):
            await asyncio.sleep(int(arg("goaway_ms")) / 1000)
            if self.closed:
                return
            self.flush()
            ga = hyperframe.frame.GoAwayFrame(0)
            ga.last_stream_id = sid
            ga.error_code = 0
            self.last = sid
            self.w.write(ga.serialize())
        if arg("delay_ms"):
            await asyncio.sleep(int(arg("delay_ms")) / 1000)
        if self.last is not None and sid > self.last:
            self.log(sid, st, False)
            return
        if self.closed or sid not in self.streams:
            return
        self.log(sid, st, True)
        if arg("reset"):
            self.h2.reset_stream(sid, h2.errors.ErrorCodes.INTERNAL_ERROR)
            self.flush()
            return
        if arg("close"):
            self.h2.close_connection()
            self.flush()
            self.closed = True
            self.w.close()
            return
        reqbody = bytes(st["body"])
        if arg("bytes"):
            body = b"x" * int(arg("bytes"))
        elif reqbody:
            body = reqbody
        else:
            info = {"method": hd.get(":method"), "path": hd.get(":path"), "authority": hd.get(":authority"),
                    "headers": {k: v for k, v in hd.items() if not k.startswith(":")}}
            body = (json.dumps(info) + "\n").encode()
        trailers = bool(arg("trailers"))
        extra = []
        if arg("cc"):
            extra.append(("cache-control", arg("cc")))
        if arg("etag"):
            extra.append(("etag", '"%s"' % arg("etag")))
            if hd.get("if-none-match") == '"%s"' % arg("etag"):
                self.h2.send_headers(sid, [(":status", "304"), ("x-conn", str(self.n))] + extra, end_stream=True)
                self.flush()
                self.streams.pop(sid, None)
                return
        headers = [(":status", arg("status") or "200"), ("content-type", "application/octet-stream"),
                   ("x-conn", str(self.n)), ("x-stream", str(sid)),
                   ("x-body-sha256", hashlib.sha256(reqbody).hexdigest()), ("x-body-len", str(len(reqbody)))] + extra
        if not trailers:
            headers.append(("content-length", str(len(body))))
        self.h2.send_headers(sid, headers)
        self.flush()
        if not await self.send_body(sid, body, not trailers):
            return
        if trailers:
            self.h2.send_headers(sid, [("x-checksum", hashlib.sha256(body).hexdigest())], end_stream=True)
        self.flush()
        self.streams.pop(sid, None)


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--max-streams", type=int, default=100)
    ap.add_argument("--log")
    a = ap.parse_args()
    global LOG
    LOG = a.log

    async def serve(reader, writer):
        await Conn(reader, writer, a.max_streams).run()

    srv = await asyncio.start_server(serve, "127.0.0.1", a.port)
    async with srv:
        await srv.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
