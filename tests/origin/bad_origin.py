#!/usr/bin/python3
"""A raw-socket HTTP/1.1 origin that misbehaves on command, for
tests/integration/upstream_faults.sh: the request path picks the exact bytes
sent back. Keep-alive; request bodies are not read (send GETs).

usage: bad_origin.py PORT

  /ok                 200, Content-Length: 2, "ok"
  /empty              204, no body
  /delay/MS/WHAT      waits MS ms, then answers as /WHAT
  /badproto           "HTTX/1.1 200 OK" status line
  /badstatus          "HTTP/1.1 2000 OK"
  /status600          "HTTP/1.1 600 Nope"
  /status099          "HTTP/1.1 099 Nope"
  /extra              Content-Length: 2, then 5 bytes ("okXYZ") in one send
  /idle-garbage       200 "ok", then 200 ms later "garbage" on the idle connection
  /stall-body         head with Content-Length: 10 and 2 bytes, then nothing
  /stall-head         nothing at all
  /headers/N          a 200 head of N header lines (Content-Length counted)
  /headsize/B         a 200 head of exactly B bytes, status line to the empty line
  /early              103 Early Hints (a Link header), then 200 "ok"
  /continue           an unasked-for 100 Continue, then 200 "ok"
  /switch             101 Switching Protocols to a request that asked for none
  /__events           JSON list of ["closed", PATH, seconds from the request to
                      the peer's close] for stalled requests, and
                      ["conn", N] connections accepted so far
"""
import json
import socket
import sys
import threading
import time

lock = threading.Lock()
events = []
conns = 0


def ok(extra=b""):
    return b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok" + extra


def headers(n):
    lines = [b"Content-Length: 2"] + [b"X-H%d: v" % i for i in range(n - 1)]
    return b"HTTP/1.1 200 OK\r\n" + b"\r\n".join(lines) + b"\r\n\r\nok"


def headsize(total):
    status = b"HTTP/1.1 200 OK\r\n"
    fixed = status + b"Content-Length: 2\r\n" + b"X-Pad: " + b"\r\n" + b"\r\n"
    pad = total - len(fixed)
    assert pad >= 0
    return fixed[:-4] + b"p" * pad + b"\r\n\r\nok"


def answer(path):
    """Bytes to send, or a string naming a behaviour."""
    if path.startswith("/delay/"):
        _, _, ms, rest = path.split("/", 3)
        time.sleep(int(ms) / 1000)
        path = "/" + rest
    if path.startswith("/ok"):
        return ok()
    if path.startswith("/empty"):
        return b"HTTP/1.1 204 No Content\r\n\r\n"
    if path.startswith("/badproto"):
        return b"HTTX/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    if path.startswith("/badstatus"):
        return b"HTTP/1.1 2000 OK\r\nContent-Length: 2\r\n\r\nok"
    if path.startswith("/status600"):
        return b"HTTP/1.1 600 Nope\r\nContent-Length: 2\r\n\r\nok"
    if path.startswith("/status099"):
        return b"HTTP/1.1 099 Nope\r\nContent-Length: 2\r\n\r\nok"
    if path.startswith("/early"):
        return b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n" + ok()
    if path.startswith("/continue"):
        return b"HTTP/1.1 100 Continue\r\n\r\n" + ok()
    if path.startswith("/switch"):
        return b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n"
    if path.startswith("/extra"):
        return ok(b"XYZ")
    if path.startswith("/headers/"):
        return headers(int(path.split("/")[2]))
    if path.startswith("/headsize/"):
        return headsize(int(path.split("/")[2]))
    if path.startswith("/idle-garbage"):
        return "idle-garbage"
    if path.startswith("/stall-body"):
        return "stall-body"
    if path.startswith("/stall-head"):
        return "stall-head"
    if path.startswith("/__events"):
        with lock:
            body = json.dumps(events + [["conn", conns]]).encode()
        return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    return b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"


def stall(sock, path, sent):
    """Holds the connection until the peer closes it; logs how long that took."""
    start = time.monotonic()
    if sent:
        sock.sendall(sent)
    sock.settimeout(30)
    try:
        while sock.recv(65536):
            pass
    except OSError:
        pass
    with lock:
        events.append(["closed", path, round(time.monotonic() - start, 3)])


def serve(sock):
    buf = b""
    try:
        while True:
            while b"\r\n\r\n" not in buf:
                data = sock.recv(65536)
                if not data:
                    return
                buf += data
            head, buf = buf.split(b"\r\n\r\n", 1)
            path = head.split(b"\r\n", 1)[0].split(b" ")[1].decode("latin-1")
            out = answer(path)
            if out == "stall-body":
                return stall(sock, path, b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nok")
            if out == "stall-head":
                return stall(sock, path, b"")
            if out == "idle-garbage":
                sock.sendall(ok())
                time.sleep(0.2)
                sock.sendall(b"garbage")
                continue
            sock.sendall(out)
    except OSError:
        pass
    finally:
        sock.close()


def main():
    global conns
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", int(sys.argv[1])))
    srv.listen(128)
    while True:
        s, _ = srv.accept()
        with lock:
            conns += 1
        threading.Thread(target=serve, args=(s,), daemon=True).start()


if __name__ == "__main__":
    main()
