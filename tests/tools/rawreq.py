#!/usr/bin/python3
"""rawreq.py - send exact bytes to 127.0.0.1:PORT and show the response(s).

    rawreq.py PORT [-f FILE] [-t SECONDS] [-n COUNT] [--status | --body]

Reads the request bytes from FILE (default: stdin) and sends them as they are
on one new connection (while reading, so that a server that answers early and
closes, as a proxy does with an oversized head, is still heard). Then reads
responses until COUNT of them were parsed (default 1; 0 = no limit), the peer
closed, or SECONDS (default 5) passed without data.

Output (default): a first line with the status codes of the parsed responses,
space-separated ("000" when there was none), then what was read, verbatim
(latin-1), then a last line "#closed", "#reset" or "#timeout".
  --status  only the first line
  --body    only the body of the first response (chunked decoded)
  --status --body   the first line, then that body

Standard library only.
"""

import argparse
import socket
import sys
import threading
import time


def parse_one(buf):
    """Returns (status, body, rest) for the first complete response in BUF,
    or None when it is not complete yet. 1xx responses are returned too."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = buf[:end].split(b"\r\n")
    rest = buf[end + 4:]
    try:
        status = int(head[0].split(b" ")[1])
    except (IndexError, ValueError):
        status = 0
    hdrs = {}
    for ln in head[1:]:
        k, _, v = ln.partition(b":")
        hdrs.setdefault(k.strip().lower(), []).append(v.strip())
    if 100 <= status < 200 or status in (204, 304):
        return status, b"", rest
    te = b",".join(hdrs.get(b"transfer-encoding", [])).lower()
    if b"chunked" in te:
        body = b""
        pos = 0
        while True:
            nl = rest.find(b"\r\n", pos)
            if nl < 0:
                return None
            try:
                size = int(rest[pos:nl].split(b";")[0].strip(), 16)
            except ValueError:
                return status, body, b""
            pos = nl + 2
            if size == 0:
                # trailers up to an empty line
                while True:
                    nl = rest.find(b"\r\n", pos)
                    if nl < 0:
                        return None
                    if nl == pos:
                        return status, body, rest[nl + 2:]
                    pos = nl + 2
            if len(rest) < pos + size + 2:
                return None
            body += rest[pos:pos + size]
            pos += size + 2
    cl = hdrs.get(b"content-length")
    if cl is not None:
        try:
            n = int(cl[0])
        except ValueError:
            n = 0
        if len(rest) < n:
            return None
        return status, rest[:n], rest[n:]
    return None  # delimited by close: complete only at EOF


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("port", type=int)
    ap.add_argument("-f", "--file")
    ap.add_argument("-t", "--timeout", type=float, default=5.0)
    ap.add_argument("-n", "--count", type=int, default=1)
    ap.add_argument("--status", action="store_true")
    ap.add_argument("--body", action="store_true")
    a = ap.parse_args()

    data = open(a.file, "rb").read() if a.file else sys.stdin.buffer.read()
    try:
        s = socket.create_connection(("127.0.0.1", a.port), timeout=a.timeout)
    except OSError as e:
        if a.status or not a.body:
            sys.stdout.write("000\n")
        if not a.status and not a.body:
            sys.stdout.write("#refused %s\n" % e)
        return

    def send():
        try:
            s.sendall(data)
        except OSError:
            pass

    t = threading.Thread(target=send, daemon=True)
    t.start()

    buf = b""
    how = "#timeout"
    responses = []
    pending = b""
    deadline = time.monotonic() + max(a.timeout * 4, 10)
    while time.monotonic() < deadline:
        try:
            b = s.recv(65536)
        except socket.timeout:
            break
        except ConnectionResetError:
            how = "#reset"
            break
        if not b:
            how = "#closed"
            break
        buf += b
        pending += b
        while True:
            r = parse_one(pending)
            if r is None:
                break
            status, body, pending = r
            if 100 <= status < 200:
                continue
            responses.append((status, body))
        if a.count and len(responses) >= a.count:
            break
    if how != "#timeout" and pending:
        # a response delimited by the close
        end = pending.find(b"\r\n\r\n")
        if end >= 0:
            try:
                responses.append((int(pending.split(b" ")[1]), pending[end + 4:]))
            except (IndexError, ValueError):
                pass
    try:
        s.close()
    except OSError:
        pass

    codes = " ".join("%03d" % st for st, _ in responses) or "000"
    out = sys.stdout
    if a.body:
        if a.status:
            out.write(codes + "\n")
        out.write(responses[0][1].decode("latin-1") if responses else "")
        return
    out.write(codes + "\n")
    if a.status:
        return
    out.write(buf.decode("latin-1"))
    out.write("\n" + how + "\n")


if __name__ == "__main__":
    main()
