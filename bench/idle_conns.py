#!/usr/bin/python3
"""Opens N keep-alive connections to a proxy, sends one request on each and
reads its answer, then holds them idle; prints the proxy's RSS before, while
they are held and after they are closed (kB, from /proc/PID/status).

    idle_conns.py PID PORT N [HOLD_SECONDS [BATCH]]

BATCH connections (default 100) are opened and asked at once, so the
proxy's own pool of origin connections grows to about that many and stays.
"""
import selectors
import socket
import sys
import time


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def main():
    pid, port, n = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    hold = float(sys.argv[4]) if len(sys.argv) > 4 else 2.0
    req = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"
    before = rss_kb(pid)
    sel = selectors.DefaultSelector()
    socks, pending, answered = [], 0, 0
    # open and ask in batches so the listen backlog never overflows
    batch = int(sys.argv[5]) if len(sys.argv) > 5 else 100
    for start in range(0, n, batch):
        for _ in range(min(batch, n - start)):
            s = socket.create_connection(("127.0.0.1", port))
            s.setblocking(False)
            s.send(req)
            socks.append(s)
            sel.register(s, selectors.EVENT_READ, bytearray())
            pending += 1
        deadline = time.time() + 30
        while pending and time.time() < deadline:
            for key, _ in sel.select(timeout=1):
                buf = key.data
                chunk = key.fileobj.recv(65536)
                if not chunk:
                    sys.exit("a connection closed before its answer")
                buf += chunk
                head, sep, body = bytes(buf).partition(b"\r\n\r\n")
                if not sep:
                    continue
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                if len(body) >= length:
                    if not head.startswith(b"HTTP/1.1 200"):
                        sys.exit("answer: " + head.split(b"\r\n")[0].decode())
                    sel.unregister(key.fileobj)
                    pending -= 1
                    answered += 1
        if pending:
            sys.exit(f"{pending} answers missing")
    time.sleep(hold)
    held = rss_kb(pid)
    for s in socks:
        s.close()
    time.sleep(hold + 1.5)
    after = rss_kb(pid)
    per = (held - before) * 1024 / n
    print(f"connections {n}  rss_before_kb {before}  rss_held_kb {held}  rss_after_kb {after}  "
          f"bytes_per_idle_conn {per:.0f}  after/before {after / before:.2f}")


if __name__ == "__main__":
    main()
