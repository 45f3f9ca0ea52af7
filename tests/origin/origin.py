#!/usr/bin/python3
"""origin.py - a scriptable HTTP/1.1 origin server for tern's integration tests.

    /usr/bin/python3 tests/origin/origin.py --port N [--name NAME] [--log FILE]
                                            [--host 127.0.0.1] [--json-log FILE]
                                            [--delay-ms N] [--status N]
                                            [--raw-headers]

Standard library only. Listens on 127.0.0.1:N and prints
"listening on 127.0.0.1:N" (flushed) once it accepts connections. SIGTERM and
SIGINT stop it cleanly (exit status 0).

Protocol: HTTP/1.1 with keep-alive and pipelining (requests on a connection
are answered in order); HTTP/1.0 closes after each response unless the request
says "Connection: keep-alive". Request bodies framed by Content-Length or
"Transfer-Encoding: chunked" (trailers accepted) are streamed and hashed while
read, never held whole (except with ?echo=1). "Expect: 100-continue" gets an
"HTTP/1.1 100 Continue" before the body is read. Malformed requests get a 400
and the connection is closed.

Every response carries "x-origin: NAME" (NAME defaults to "origin").

Logging: one line per request, flushed at once, to --log FILE (appended) or
stdout:   [NAME] METHOD PATH Host: HOST        (HOST is "-" when absent)
With --json-log FILE, the JSON document described below (headers, body_len,
body_sha256, ...) is also appended to FILE, one line per request, once the
body has been read: what a client that never sees the response (a mirror's)
sent.

--raw-headers adds "raw_headers" to the JSON document: the header lines
exactly as received, in order, duplicates kept, case and spacing untouched
(each line decoded as latin-1, without its CRLF). Off by default, so the
documents of other tests keep their shape.

--delay-ms N and --status N apply to every request (as ?delay_ms and
?status do for one): an origin that is slow, or answers differently, whatever
it is asked.

Behaviour (PATH is the request target; knobs are query parameters, combinable):

  any path        200, JSON body:
                    {"name", "method", "path" (full target), "version",
                     "headers": {lower-case name: value, or a list of values
                                 when repeated},
                     "trailers": {...} (chunked requests with trailers only),
                     "raw_headers": ["Name: value", ...] (--raw-headers only),
                     "body_len": N, "body_sha256": hex,
                     "body": text (only when body_len <= 65536; undecodable
                             bytes replaced)}
  /upload         the same JSON (a name for tests that send big bodies)
  /__count        {"count": N, "paths": {path-without-query: N}, "bad": N}:
                  requests seen (and, in "bad", requests refused as malformed,
                  whose heads or bodies this origin could not parse)
                  since start or the last reset (/__ paths not counted)
  /__reset        zeroes the counters and the fail_first state; {"reset": true}
  /__last?path=P  {"method", "target", "headers"} of the last request for
                  path P (without query; /__ paths not recorded), {} if none:
                  what reached the origin even when it answered 304

  ?status=N       answer with status N (204, 304 and 1xx-free: no body for
                  204/304; HEAD never gets a body)
  ?delay_ms=N     wait N ms after reading the request before answering
  ?size=N         the body is N bytes of deterministic data instead of JSON
                  (content-type application/octet-stream), with header
                  "x-body-sha256: HEX"; generated and sent in 64 KiB pieces.
                  Byte i is BLOCK[i % 65536] where BLOCK is built from the
                  seed (see pattern_block; tests can recompute it).
  ?seed=S         seed for ?size data (default "tern")
  ?chunked=1      use Transfer-Encoding: chunked for the response body
  ?trailer=name:value
                  send a trailer after a chunked body (repeatable; implies
                  ?chunked=1)
  ?close_mid_body=1
                  send the headers (with the full Content-Length, or chunked
                  with ?chunked=1) and about half the body, then close
  ?close=1        close the connection without responding
  ?close_after=1  respond with "Connection: close" and close afterwards
  ?hdr=name:value add a response header (repeatable; URL-encode as needed)
  ?etag=X         send ETag: "X"; a request whose If-None-Match names it
                  (or is *) gets 304 Not Modified with the ETag and ?hdr
  ?lm=1           send Last-Modified: Mon, 01 Jan 2024 00:00:00 GMT; a
                  request with If-Modified-Since at or after it gets 304
  ?drip_ms=N      send the headers, then the body in pieces of ?drip_bytes
                  (default 100) with N ms sleep before each piece
  ?fail_first=K&key=X
                  the first K requests with key X get 503 (JSON body with
                  "fail_first": true), later ones are answered normally
                  (key defaults to the path without query)
  ?echo=1         the response body is the request body, verbatim (buffered;
                  capped at 64 MiB)
  ?ctype=T        content-type of the response
  ?date=1         send Date: now (IMF-fixdate), on 304s too
  ?hdr304=name:value
                  add a header to 304 answers only (repeatable)

A request header "X-Origin-Query: k=v&k2=v2" adds knobs as if they were in
the query (after it, so they win where one value counts): the same URL can
be answered differently per request, e.g. a POST to a cached URL with
"X-Origin-Query: status=500".
"""

import argparse
import asyncio
import email.utils
import hashlib
import json
import signal
import sys
import urllib.parse

BLOCK_SIZE = 65536
PIECE = 65536
HEAD_LIMIT = 256 * 1024
ECHO_CAP = 64 * 1024 * 1024

REASONS = {
    100: "Continue", 200: "OK", 201: "Created", 202: "Accepted",
    204: "No Content", 206: "Partial Content", 301: "Moved Permanently",
    302: "Found", 304: "Not Modified", 400: "Bad Request",
    401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
    405: "Method Not Allowed", 408: "Request Timeout", 413: "Payload Too Large",
    429: "Too Many Requests", 431: "Request Header Fields Too Large",
    500: "Internal Server Error", 502: "Bad Gateway",
    503: "Service Unavailable", 504: "Gateway Timeout",
}


class BadRequest(Exception):
    pass


_blocks = {}
_sha_cache = {}

LAST_MODIFIED = "Mon, 01 Jan 2024 00:00:00 GMT"
LAST_MODIFIED_TS = 1704067200


def pattern_block(seed):
    """64 KiB of data: SHA-256 of "SEED:0", "SEED:1", ... concatenated."""
    blk = _blocks.get(seed)
    if blk is None:
        parts = []
        for i in range(BLOCK_SIZE // 32):
            parts.append(hashlib.sha256(("%s:%d" % (seed, i)).encode()).digest())
        blk = b"".join(parts)
        _blocks[seed] = blk
    return blk


def pattern_pieces(seed, size):
    blk = pattern_block(seed)
    left = size
    while left > 0:
        n = min(left, BLOCK_SIZE)
        yield blk[:n]
        left -= n


def pattern_sha256(seed, size):
    key = (seed, size)
    h = _sha_cache.get(key)
    if h is None:
        d = hashlib.sha256()
        for p in pattern_pieces(seed, size):
            d.update(p)
        h = d.hexdigest()
        if len(_sha_cache) > 256:
            _sha_cache.clear()
        _sha_cache[key] = h
    return h


class Origin:
    def __init__(self, name, log, json_log=None, delay_ms=0, status=200, raw_headers=False):
        self.name = name
        self.raw_headers = raw_headers
        self.log = log
        self.json_log = json_log
        self.delay_ms = delay_ms
        self.status = status
        self.count = 0
        self.bad = 0
        self.paths = {}
        self.failures = {}
        self.last = {}

    def log_line(self, method, target, host):
        self.log.write("[%s] %s %s Host: %s\n" % (self.name, method, target, host or "-"))
        self.log.flush()

    # ---- request reading -------------------------------------------------

    async def read_head(self, reader):
        try:
            data = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as e:
            if e.partial.strip() == b"":
                return None
            raise BadRequest("truncated head")
        except asyncio.LimitOverrunError:
            raise BadRequest("head too large")
        lines = data[:-4].split(b"\r\n")
        # Tolerate empty lines before the request line (RFC 9112 2.2).
        while lines and lines[0] == b"":
            lines.pop(0)
        if not lines:
            raise BadRequest("empty head")
        parts = lines[0].split(b" ")
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
            raise BadRequest("bad request line")
        method, target, version = (p.decode("latin-1") for p in parts)
        headers = []
        for ln in lines[1:]:
            if ln[:1] in (b" ", b"\t"):
                raise BadRequest("obsolete line folding")
            k, sep, v = ln.partition(b":")
            if not sep or not k or k != k.strip():
                raise BadRequest("bad header line")
            headers.append((k.decode("latin-1").lower(), v.strip().decode("latin-1")))
        return method, target, version, headers, [ln.decode("latin-1") for ln in lines[1:]]

    async def read_body(self, reader, headers, sink):
        """Reads the body, calling sink(bytes) per piece; returns trailers."""
        te = [v for k, v in headers if k == "transfer-encoding"]
        cl = [v for k, v in headers if k == "content-length"]
        if te:
            codings = [c.strip().lower() for v in te for c in v.split(",")]
            if codings[-1] != "chunked" or cl:
                raise BadRequest("bad transfer-encoding")
            return await self.read_chunked(reader, sink)
        if cl:
            vals = {c.strip() for v in cl for c in v.split(",")}
            if len(vals) != 1 or not next(iter(vals)).isdigit():
                raise BadRequest("bad content-length")
            left = int(next(iter(vals)))
            while left > 0:
                piece = await reader.read(min(left, PIECE))
                if not piece:
                    raise BadRequest("body truncated")
                sink(piece)
                left -= len(piece)
        return {}

    async def read_chunked(self, reader, sink):
        while True:
            line = await reader.readuntil(b"\r\n")
            size_s = line[:-2].split(b";", 1)[0].strip()
            try:
                size = int(size_s, 16)
            except ValueError:
                raise BadRequest("bad chunk size")
            if size == 0:
                break
            left = size
            while left > 0:
                piece = await reader.read(min(left, PIECE))
                if not piece:
                    raise BadRequest("chunk truncated")
                sink(piece)
                left -= len(piece)
            if await reader.readexactly(2) != b"\r\n":
                raise BadRequest("chunk not followed by CRLF")
        trailers = {}
        while True:
            line = await reader.readuntil(b"\r\n")
            if line == b"\r\n":
                return trailers
            k, sep, v = line[:-2].partition(b":")
            if not sep:
                raise BadRequest("bad trailer")
            add_header(trailers, k.decode("latin-1").strip().lower(), v.strip().decode("latin-1"))

    # ---- connection loop -------------------------------------------------

    async def handle(self, reader, writer):
        try:
            while True:
                try:
                    head = await self.read_head(reader)
                except BadRequest:
                    self.bad += 1
                    await self.send_simple(writer, 400, b"bad request\n", close=True)
                    break
                if head is None:
                    break
                keep = await self.handle_request(reader, writer, *head)
                if not keep:
                    break
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        except asyncio.CancelledError:
            pass
        finally:
            try:
                writer.close()
            except Exception:
                pass

    async def send_simple(self, writer, status, body, close=False):
        hdrs = [("content-type", "text/plain"), ("content-length", str(len(body)))]
        if close:
            hdrs.append(("connection", "close"))
        writer.write(status_line(status) + render_headers(hdrs, self.name) + body)
        try:
            await writer.drain()
        except ConnectionError:
            pass

    async def handle_request(self, reader, writer, method, target, version, headers, raw=None):
        """Serves one request; returns True to keep the connection open."""
        hmap = {}
        for k, v in headers:
            add_header(hmap, k, v)
        host = hmap.get("host")
        if isinstance(host, list):
            host = host[0]
        self.log_line(method, target, host)

        conn_tokens = {t.strip().lower() for k, v in headers if k == "connection" for t in v.split(",")}
        if version == "HTTP/1.0":
            keep = "keep-alive" in conn_tokens
        else:
            keep = "close" not in conn_tokens

        url = urllib.parse.urlsplit(target)
        path = url.path
        q = urllib.parse.parse_qs(url.query, keep_blank_values=True)
        xq = hmap.get("x-origin-query")
        for v in (xq if isinstance(xq, list) else [xq] if xq else []):
            for k, vs in urllib.parse.parse_qs(v, keep_blank_values=True).items():
                q.setdefault(k, []).extend(vs)

        def qget(name, default=None):
            v = q.get(name)
            return v[-1] if v else default

        def qint(name, default=0):
            try:
                return int(qget(name, default))
            except (TypeError, ValueError):
                return default

        if not path.startswith("/__"):
            self.count += 1
            self.paths[path] = self.paths.get(path, 0) + 1
            self.last[path] = {"method": method, "target": target, "headers": hmap}

        # The body: 100-continue first, then hash (and keep a small prefix).
        has_body = any(k in ("content-length", "transfer-encoding") for k, _ in headers)
        expect = hmap.get("expect")
        if isinstance(expect, str) and expect.lower() == "100-continue" and has_body:
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            await writer.drain()

        digest = hashlib.sha256()
        state = {"len": 0, "keep": bytearray(), "echo": qget("echo") == "1"}
        cap = ECHO_CAP if state["echo"] else 65536

        def sink(piece):
            digest.update(piece)
            state["len"] += len(piece)
            if len(state["keep"]) <= cap:
                state["keep"] += piece[: cap + 1 - len(state["keep"])]

        try:
            trailers = await self.read_body(reader, headers, sink)
        except BadRequest:
            self.bad += 1
            await self.send_simple(writer, 400, b"bad request body\n", close=True)
            return False

        if qget("close") == "1":
            return False

        delay = qint("delay_ms", self.delay_ms)
        if delay > 0:
            await asyncio.sleep(delay / 1000.0)

        status = qint("status", self.status)
        extra = []
        for h in q.get("hdr", []):
            k, sep, v = h.partition(":")
            if sep and k.strip():
                extra.append((k.strip(), v.strip()))

        if qget("date") == "1":
            extra.append(("date", email.utils.formatdate(usegmt=True)))
        extra304 = []
        for h in q.get("hdr304", []):
            k, sep, v = h.partition(":")
            if sep and k.strip():
                extra304.append((k.strip(), v.strip()))

        etag = qget("etag")
        if etag is not None:
            extra.append(("etag", '"%s"' % etag))
            inm = hmap.get("if-none-match")
            inm = ",".join(inm) if isinstance(inm, list) else inm
            if inm is not None:
                tags = [t.strip() for t in inm.split(",")]
                if "*" in tags or ('"%s"' % etag) in tags or ('W/"%s"' % etag) in tags:
                    return await self.send_body(writer, method, 304, extra + extra304, [], 0, keep, q)
        if qget("lm") == "1":
            extra.append(("last-modified", LAST_MODIFIED))
            ims = hmap.get("if-modified-since")
            if isinstance(ims, str) and "if-none-match" not in hmap:
                try:
                    when = email.utils.parsedate_to_datetime(ims).timestamp()
                except (TypeError, ValueError, IndexError):
                    when = None
                if when is not None and when >= LAST_MODIFIED_TS:
                    return await self.send_body(writer, method, 304, extra + extra304, [], 0, keep, q)

        # Internal endpoints.
        if path == "/__count":
            return await self.send_json(writer, method, 200, {"count": self.count, "paths": self.paths, "bad": self.bad}, [], keep, q)
        if path == "/__last":
            return await self.send_json(writer, method, 200, self.last.get(qget("path", ""), {}), [], keep, q)
        if path == "/__reset":
            self.count = 0
            self.bad = 0
            self.paths = {}
            self.failures = {}
            self.last = {}
            return await self.send_json(writer, method, 200, {"reset": True}, [], keep, q)

        fail_first = qint("fail_first")
        if fail_first > 0:
            key = qget("key", path)
            seen = self.failures.get(key, 0)
            self.failures[key] = seen + 1
            if seen < fail_first:
                return await self.send_json(writer, method, 503,
                                            {"name": self.name, "fail_first": True, "attempt": seen + 1},
                                            extra, keep, q)

        if qget("close_after") == "1":
            keep = False

        if state["echo"]:
            body = bytes(state["keep"][:ECHO_CAP])
            return await self.send_body(writer, method, status,
                                        [("content-type", qget("ctype", "application/octet-stream"))] + extra,
                                        [body], len(body), keep, q)

        if "size" in q:
            size = max(0, qint("size"))
            seed = qget("seed", "tern")
            hdrs = [("content-type", qget("ctype", "application/octet-stream")),
                    ("x-body-sha256", pattern_sha256(seed, size))] + extra
            return await self.send_body(writer, method, status, hdrs,
                                        pattern_pieces(seed, size), size, keep, q)

        doc = {
            "name": self.name, "method": method, "path": target, "version": version,
            "headers": hmap, "body_len": state["len"], "body_sha256": digest.hexdigest(),
        }
        if trailers:
            doc["trailers"] = trailers
        if self.raw_headers:
            doc["raw_headers"] = raw or []
        if state["len"] <= 65536:
            doc["body"] = bytes(state["keep"]).decode("utf-8", "replace")
        if self.json_log:
            self.json_log.write(json.dumps(doc, sort_keys=True) + "\n")
            self.json_log.flush()
        return await self.send_json(writer, method, status, doc, extra, keep, q)

    async def send_json(self, writer, method, status, doc, extra, keep, q):
        body = (json.dumps(doc, sort_keys=True) + "\n").encode()
        ctype = q.get("ctype", ["application/json"])[-1]
        return await self.send_body(writer, method, status, [("content-type", ctype)] + extra,
                                    [body], len(body), keep, q)

    async def send_body(self, writer, method, status, hdrs, pieces, length, keep, q):
        """Sends a response whose body is the iterable PIECES (LENGTH bytes)."""
        def qget(name, default=None):
            v = q.get(name)
            return v[-1] if v else default

        no_body = method == "HEAD" or status in (204, 304) or 100 <= status < 200
        trailers = [t.split(":", 1) for t in q.get("trailer", []) if ":" in t]
        chunked = (qget("chunked") == "1" or bool(trailers)) and not no_body
        mid_close = qget("close_mid_body") == "1"
        drip = 0
        try:
            drip = int(qget("drip_ms", 0))
        except ValueError:
            pass
        try:
            drip_bytes = max(1, int(qget("drip_bytes", 100)))
        except ValueError:
            drip_bytes = 100

        hdrs = list(hdrs)
        if chunked:
            hdrs.append(("transfer-encoding", "chunked"))
        elif status not in (204, 304) and not (100 <= status < 200):
            hdrs.append(("content-length", str(length)))
        if not keep:
            hdrs.append(("connection", "close"))
        writer.write(status_line(status) + render_headers(hdrs, self.name))
        if no_body:
            await writer.drain()
            return keep

        limit = length // 2 if mid_close else length
        sent = 0

        async def emit(data):
            if chunked:
                writer.write(b"%x\r\n" % len(data) + data + b"\r\n")
            else:
                writer.write(data)
            await writer.drain()

        await writer.drain()
        for piece in pieces:
            if sent >= limit:
                break
            piece = piece[: limit - sent]
            sent += len(piece)
            if drip > 0:
                for i in range(0, len(piece), drip_bytes):
                    await asyncio.sleep(drip / 1000.0)
                    await emit(piece[i:i + drip_bytes])
            else:
                await emit(piece)
        if mid_close:
            await writer.drain()
            return False
        if chunked:
            tail = "".join("%s: %s\r\n" % (k, v) for k, v in trailers)
            writer.write(b"0\r\n" + tail.encode("latin-1", "replace") + b"\r\n")
            await writer.drain()
        return keep


def add_header(d, k, v):
    if k in d:
        if isinstance(d[k], list):
            d[k].append(v)
        else:
            d[k] = [d[k], v]
    else:
        d[k] = v


def status_line(status):
    return ("HTTP/1.1 %d %s\r\n" % (status, REASONS.get(status, "Status"))).encode()


def render_headers(hdrs, name):
    out = ["x-origin: %s\r\n" % name]
    for k, v in hdrs:
        out.append("%s: %s\r\n" % (k, v))
    out.append("\r\n")
    return "".join(out).encode("latin-1", "replace")


async def main():
    ap = argparse.ArgumentParser(description="HTTP/1.1 origin server for tern's tests")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--name", default="origin")
    ap.add_argument("--log", default=None)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--json-log", default=None)
    ap.add_argument("--delay-ms", type=int, default=0)
    ap.add_argument("--status", type=int, default=200)
    ap.add_argument("--raw-headers", action="store_true")
    args = ap.parse_args()

    log = open(args.log, "a") if args.log else sys.stdout
    json_log = open(args.json_log, "a") if args.json_log else None
    origin = Origin(args.name, log, json_log, args.delay_ms, args.status, args.raw_headers)
    server = await asyncio.start_server(origin.handle, args.host, args.port,
                                        limit=HEAD_LIMIT, reuse_address=True, backlog=1024)
    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
    port = server.sockets[0].getsockname()[1]
    print("listening on %s:%d" % (args.host, port), flush=True)
    await stop
    server.close()
    for t in asyncio.all_tasks():
        if t is not asyncio.current_task():
            t.cancel()
    log.flush()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
    sys.exit(0)
