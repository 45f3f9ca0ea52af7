#!/usr/bin/python3
"""Checks xds_server.py as an xDS client would: starts it on a free port with
a temporary snapshot, talks SotW and delta over ADS and the per-type
services, edits the snapshot, and reads the server's log.

usage: selftest.py [--gen-dir DIR] [--keep]
Prints "ok - ..." / "not ok - ..." per check, then "N passed, M failed";
exits 1 when a check failed.
"""

import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree

import argparse
import os
import queue
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time

import grpc
import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import xds_proto  # noqa: E402
from xds_proto import CDS, EDS, LDS, RDS  # noqa: E402

SECRET = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"
ADS = "/envoy.service.discovery.v3.AggregatedDiscoveryService/"
QUIET = 0.5  # how long "nothing more arrives" is watched for


class Results:
    def __init__(self):
        self.passed = self.failed = 0

    def check(self, name, cond, why=""):
        if cond:
            self.passed += 1
            print("ok - %s" % name, flush=True)
        else:
            self.failed += 1
            print("not ok - %s%s" % (name, ": " + str(why) if why else ""), flush=True)
        return cond


class Log:
    """The server's stderr, read from a file."""

    def __init__(self, path):
        self.path = path

    def text(self):
        try:
            with open(self.path, encoding="utf-8", errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def mark(self):
        return len(self.text())

    def wait(self, pattern, since=0, timeout=5.0):
        """The first match of pattern after offset since, or None."""
        rx = re.compile(pattern, re.M)
        end = time.monotonic() + timeout
        while True:
            m = rx.search(self.text(), since)
            if m or time.monotonic() > end:
                return m
            time.sleep(0.02)

    def find(self, pattern, since=0):
        return re.compile(pattern, re.M).search(self.text(), since)


class XdsCall:
    """One bidirectional xDS stream driven from the test: send() queues a
    request, recv() waits for the next response (or the RPC's error)."""

    _EOF = object()

    def __init__(self, channel, method, req_serializer, resp_deserializer):
        self.requests = queue.Queue()
        self.responses = queue.Queue()
        rpc = channel.stream_stream(method, request_serializer=req_serializer,
                                    response_deserializer=resp_deserializer)
        self.call = rpc(iter(self.requests.get, self._EOF))
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        try:
            for r in self.call:
                self.responses.put(r)
        except grpc.RpcError as e:
            self.responses.put(e)
        self.responses.put(self._EOF)

    def send(self, req):
        self.requests.put(req)

    def recv(self, timeout=3.0):
        try:
            r = self.responses.get(timeout=timeout)
        except queue.Empty:
            return None
        return None if r is self._EOF else r

    def drain(self, wait=QUIET):
        """Every response that arrives within wait seconds."""
        out = []
        end = time.monotonic() + wait
        while True:
            left = end - time.monotonic()
            if left <= 0:
                return out
            r = self.recv(left)
            if r is None:
                return out
            out.append(r)

    def error(self, timeout=3.0):
        """The status code the RPC ended with (None if it did not end)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            r = self.recv(end - time.monotonic())
            if isinstance(r, grpc.RpcError):
                return r.code()
            if r is None:
                return None
        return None

    def close(self):
        self.call.cancel()
        self.requests.put(self._EOF)


def any_names(resp):
    """Names of the resources in a SotW response, decoded from their Any."""
    names = []
    for a in resp.resources:
        msg = API.resource_classes[a.type_url].FromString(a.value)
        names.append(msg.cluster_name if a.type_url == EDS else msg.name)
    return sorted(names)


def delta_names(resp):
    return sorted(r.name for r in resp.resources)


def cluster(name, timeout="1s"):
    return {"name": name, "type": "EDS", "connect_timeout": timeout,
            "eds_cluster_config": {"eds_config": {"ads": {}, "resource_api_version": "V3"}}}


def cla(name, port):
    return {"cluster_name": name, "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {
        "socket_address": {"address": "127.0.0.1", "port_value": port}}}}]}]}


def route(name, cl):
    return {"name": name, "virtual_hosts": [{"name": "vh", "domains": ["*"], "routes": [
        {"match": {"prefix": "/"}, "route": {"cluster": cl}}]}]}


def listener(name, port):
    return {"name": name, "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
            "filter_chains": [{"filters": [{
                "name": "envoy.filters.network.http_connection_manager",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.network."
                             "http_connection_manager.v3.HttpConnectionManager",
                    "stat_prefix": "in",
                    "rds": {"route_config_name": "r1", "config_source": {"ads": {}}},
                    "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}]}}]}]}


def snapshot(version, clusters=None, endpoints=None, routes=None, listeners=None):
    return {"version": version,
            "listeners": listeners if listeners is not None else [listener("l1", 10000)],
            "routes": routes if routes is not None else [route("r1", "c1"), route("r2", "c2")],
            "clusters": clusters if clusters is not None else [cluster("c1"), cluster("c2")],
            "endpoints": endpoints if endpoints is not None else [cla("c1", 8001), cla("c2", 8002)]}


def check_loader(R, tmp):
    """The snapshot loader on its own: the sample file, a directory, the
    "@type" form, and per-resource versions that survive an unrelated edit."""
    import xds_server
    snap = xds_server.load_snapshot(API, os.path.join(HERE, "snapshot.yaml"))
    R.check("the sample snapshot.yaml loads",
            snap.version == "v1" and all(len(snap.resources[t]) == 1 for t in (LDS, RDS, CDS, EDS)))
    d = os.path.join(tmp, "snapdir")
    os.mkdir(d)
    with open(os.path.join(d, "10-clusters.yaml"), "w") as f:
        yaml.safe_dump({"version": "d1", "clusters": [cluster("c1")]}, f)
    with open(os.path.join(d, "20-more.yaml"), "w") as f:
        yaml.safe_dump({"resources": [dict(cla("c1", 1), **{"@type": EDS}),
                                      dict(cluster("c2"), **{"@type": CDS})]}, f)
    s1 = xds_server.load_snapshot(API, d)
    R.check("a snapshot directory merges its files, \"@type\" items included",
            s1.version == "d1" and sorted(s1.resources[CDS]) == ["c1", "c2"]
            and sorted(s1.resources[EDS]) == ["c1"])
    with open(os.path.join(d, "20-more.yaml"), "w") as f:
        yaml.safe_dump({"clusters": [cluster("c2", "5s")]}, f)
    s2 = xds_server.load_snapshot(API, d)
    R.check("an unchanged resource keeps its version, a changed one gets a new one",
            s1.resources[CDS]["c1"].version == s2.resources[CDS]["c1"].version
            and s1.resources[CDS]["c2"].version != s2.resources[CDS]["c2"].version)
    with open(os.path.join(d, "30-dup.yaml"), "w") as f:
        yaml.safe_dump({"clusters": [cluster("c1")]}, f)
    try:
        xds_server.load_snapshot(API, d)
        err = ""
    except xds_server.SnapshotError as e:
        err = str(e)
    R.check("a duplicate name is refused", "duplicate CDS 'c1'" in err, err)


API = None
RESULTS = Results()


def main():
    global API
    ap = argparse.ArgumentParser()
    ap.add_argument("--gen-dir")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()

    tmp = tempfile.mkdtemp(prefix="xds-selftest-")
    gen_dir = args.gen_dir or os.path.join(tmp, "gen")
    API = xds_proto.load(xds_proto.default_api_dir(), gen_dir)
    R = RESULTS
    snap_path = os.path.join(tmp, "snapshot.yaml")
    log_path = os.path.join(tmp, "server.log")
    ready = os.path.join(tmp, "ready")
    proc = None
    calls = []

    def write_snapshot(doc, raw=None):
        t = snap_path + ".new"
        with open(t, "w") as f:
            f.write(raw if raw is not None else yaml.safe_dump(doc, sort_keys=False))
        os.replace(t, snap_path)

    def edit(doc):
        """Writes a new snapshot and waits until the server loaded it."""
        m = log.mark()
        write_snapshot(doc)
        return log.wait(r"^RELOAD version=%s " % re.escape(doc["version"]), m)

    DR, DDR = API.DiscoveryRequest, API.DeltaDiscoveryRequest

    def sotw(method=ADS + "StreamAggregatedResources"):
        c = XdsCall(channel, method, DR.SerializeToString, API.DiscoveryResponse.FromString)
        calls.append(c)
        return c

    def delta(method=ADS + "DeltaAggregatedResources"):
        c = XdsCall(channel, method, DDR.SerializeToString, API.DeltaDiscoveryResponse.FromString)
        calls.append(c)
        return c

    def req(type_url, names=(), node=None, version="", nonce="", error=None):
        r = DR(type_url=type_url, resource_names=list(names), version_info=version, response_nonce=nonce)
        if node:
            r.node.id = node
        if error:
            r.error_detail.code = 3
            r.error_detail.message = error
        return r

    try:
        check_loader(R, tmp)
        write_snapshot(snapshot("v1"))
        logf = open(log_path, "w")
        proc = subprocess.Popen(
            ["/usr/bin/python3", os.path.join(HERE, "xds_server.py"), "--port", "0",
             "--snapshot", snap_path, "--gen-dir", gen_dir, "--ready-file", ready],
            stdout=logf, stderr=logf)
        logf.close()
        log = Log(log_path)
        end = time.monotonic() + 15
        while not os.path.exists(ready) and proc.poll() is None and time.monotonic() < end:
            time.sleep(0.02)
        if not R.check("server starts and writes --ready-file", os.path.exists(ready),
                       "exit %s; log: %s" % (proc.poll(), log.text()[-2000:])):
            return R
        port = int(open(ready).read())
        R.check("startup line names the port",
                log.find(r"^xds_server listening on 127\.0\.0\.1:%d$" % port))
        channel = grpc.insecure_channel("127.0.0.1:%d" % port)

        # --- SotW over ADS
        a = sotw()
        a.send(req(CDS, node="n1"))
        r = a.recv()
        R.check("SotW wildcard CDS returns every cluster",
                r is not None and r.type_url == CDS and r.version_info == "v1" and r.nonce
                and any_names(r) == ["c1", "c2"], r)
        R.check("stream open logged with node and type",
                log.wait(r"^OPEN stream=\d+ type=ADS mode=sotw node=n1 "))
        cds_nonce = r.nonce if r else ""
        m = log.mark()
        a.send(req(CDS, version="v1", nonce=cds_nonce))
        R.check("ACK logged", log.wait(r"^ACK type=CDS version=v1 nonce=%s node=n1 stream=\d+$"
                                       % re.escape(cds_nonce), m))
        R.check("an ACK is not answered", a.drain() == [])

        a.send(req(RDS, names=[]))
        R.check("RDS with no names sends nothing", a.drain() == [])
        a.send(req(RDS, names=["r1"]))
        r = a.recv()
        R.check("RDS by name sends only that route",
                r is not None and r.type_url == RDS and any_names(r) == ["r1"], r)
        rds_nonce = r.nonce if r else ""
        a.send(req(RDS, names=["r1"], version="v1", nonce=rds_nonce))
        a.send(req(LDS, names=["*"]))
        r = a.recv()
        R.check("LDS \"*\" is a wildcard", r is not None and r.type_url == LDS and any_names(r) == ["l1"], r)
        lds_nonce = r.nonce if r else ""
        a.send(req(LDS, names=["*"], version="v1", nonce=lds_nonce))
        R.check("RDS and LDS ACKed", log.wait(r"^ACK type=LDS version=v1 nonce=%s " % lds_nonce)
                and log.find(r"^ACK type=RDS version=v1 nonce=%s " % rds_nonce))

        # A snapshot edit that changes one cluster pushes CDS only.
        R.check("snapshot edit reloads", edit(snapshot("v2", clusters=[cluster("c1", "2s"), cluster("c2")])))
        got = a.drain(1.0)
        R.check("edit pushes the new version of the changed type only",
                len(got) == 1 and got[0].type_url == CDS and got[0].version_info == "v2"
                and any_names(got[0]) == ["c1", "c2"],
                [(g.type_url, g.version_info) for g in got])
        n2 = got[0].nonce if got else ""
        m = log.mark()
        a.send(req(CDS, version="v1", nonce=n2, error="cluster c1: connect_timeout too long"))
        R.check("NACK logged with the error text",
                log.wait(r"^NACK type=CDS version=v2 nonce=%s node=n1 stream=\d+ client_version=v1 "
                         r"error=cluster c1: connect_timeout too long$" % re.escape(n2), m))
        R.check("a NACKed version is not sent again", a.drain() == [])

        m = log.mark()
        a.send(req(CDS, version="v1", nonce="no-such-nonce"))
        R.check("a stale nonce is logged and ignored",
                log.wait(r"^STALE type=CDS nonce=no-such-nonce ", m) and a.drain() == [])

        edit(snapshot("v3", clusters=[cluster("c1", "3s"), cluster("c2")]))
        r = a.recv()
        R.check("after a NACK the next version is pushed",
                r is not None and r.type_url == CDS and r.version_info == "v3", r)
        if r:
            a.send(req(CDS, version="v3", nonce=r.nonce))
        a.send(req(RDS, names=["r1", "r2"], version="v1", nonce=rds_nonce))
        r = a.recv()
        R.check("a changed RDS subscription is answered with the named routes",
                r is not None and r.type_url == RDS and any_names(r) == ["r1", "r2"], r)
        if r:
            a.send(req(RDS, names=["r1", "r2"], version="v3", nonce=r.nonce))

        edit(snapshot("v4", clusters=[cluster("c1", "3s"), cluster("c2")],
                      routes=[route("r1", "c2"), route("r2", "c2")]))
        got = a.drain(1.0)
        R.check("a route change pushes RDS only",
                len(got) == 1 and got[0].type_url == RDS and got[0].version_info == "v4",
                [(g.type_url, g.version_info) for g in got])
        if got:
            a.send(req(RDS, names=["r1", "r2"], version="v4", nonce=got[0].nonce))

        # --- per-type services
        c = sotw("/envoy.service.cluster.v3.ClusterDiscoveryService/StreamClusters")
        c.send(req("", node="n-cds"))
        r = c.recv()
        R.check("StreamClusters (no type_url) serves the clusters",
                r is not None and r.type_url == CDS and r.version_info == "v4"
                and any_names(r) == ["c1", "c2"], r)
        e = sotw("/envoy.service.endpoint.v3.EndpointDiscoveryService/StreamEndpoints")
        e.send(req(EDS, names=["c2"], node="n-eds"))
        r = e.recv()
        R.check("StreamEndpoints serves the named assignment",
                r is not None and r.type_url == EDS and any_names(r) == ["c2"], r)
        w = sotw("/envoy.service.listener.v3.ListenerDiscoveryService/StreamListeners")
        w.send(req(CDS, node="n-lds"))
        R.check("a foreign type_url on a per-type service ends the stream",
                w.error() == grpc.StatusCode.INVALID_ARGUMENT)

        # --- delta
        d = delta()
        d.send(DDR(node={"id": "n2"}, type_url=CDS))
        r = d.recv()
        versions = {x.name: x.version for x in r.resources} if r else {}
        R.check("delta wildcard CDS: first response has every cluster",
                r is not None and r.type_url == CDS and delta_names(r) == ["c1", "c2"]
                and r.system_version_info == "v4" and r.nonce and all(versions.values())
                and all(x.resource.type_url == CDS for x in r.resources), r)
        m = log.mark()
        if r:
            d.send(DDR(type_url=CDS, response_nonce=r.nonce))
        R.check("delta ACK logged",
                log.wait(r"^ACK type=CDS version=v4 nonce=%s node=n2 " % (r.nonce if r else "x"), m))
        R.check("a delta ACK is not answered", d.drain() == [])

        d2 = delta()
        d2.send(DDR(node={"id": "n3"}, type_url=CDS,
                    initial_resource_versions={"c1": versions.get("c1", "?"), "c2": "old", "gone": "x"}))
        r = d2.recv()
        R.check("initial_resource_versions: current ones not resent, stale sent, unknown removed",
                r is not None and delta_names(r) == ["c2"] and list(r.removed_resources) == ["gone"], r)
        if r:
            d2.send(DDR(type_url=CDS, response_nonce=r.nonce))

        edit(snapshot("v5", clusters=[cluster("c1", "3s")], routes=[route("r1", "c1"), route("r2", "c1")]))
        r = d.recv()
        R.check("a deleted cluster shows up in removed_resources",
                r is not None and len(r.resources) == 0 and list(r.removed_resources) == ["c2"]
                and r.system_version_info == "v5", r)
        if r:
            m = log.mark()
            d.send(DDR(type_url=CDS, response_nonce=r.nonce, error_detail={"code": 3, "message": "no"}))
            R.check("delta NACK logged",
                    log.wait(r"^NACK type=CDS version=v5 nonce=%s node=n2 stream=\d+ error=no$" % r.nonce, m)
                    and d.drain() == [])
        got = a.drain(0.3)
        R.check("SotW: the deletion is a full CDS state, the route change an RDS push",
                sorted((g.type_url, tuple(any_names(g))) for g in got)
                == sorted([(CDS, ("c1",)), (RDS, ("r1", "r2"))]), [(g.type_url, any_names(g)) for g in got])
        for g in got:
            a.send(req(g.type_url, names=["r1", "r2"] if g.type_url == RDS else [], version="v5", nonce=g.nonce))

        de = delta("/envoy.service.endpoint.v3.EndpointDiscoveryService/DeltaEndpoints")
        de.send(DDR(node={"id": "n4"}, resource_names_subscribe=["c1", "nosuch"]))
        r = de.recv()
        R.check("DeltaEndpoints: subscribed names sent, a missing one in removed_resources",
                r is not None and r.type_url == EDS and delta_names(r) == ["c1"]
                and list(r.removed_resources) == ["nosuch"], r)
        if r:
            de.send(DDR(response_nonce=r.nonce))
        de.send(DDR(resource_names_subscribe=["c1"]))
        r = de.recv()
        R.check("delta: subscribing again resends the resource", r is not None and delta_names(r) == ["c1"], r)
        if r:
            de.send(DDR(response_nonce=r.nonce))
        de.send(DDR(resource_names_unsubscribe=["c1"]))
        R.check("delta: an unsubscribe is not answered", de.drain() == [])
        edit(snapshot("v6", clusters=[cluster("c1", "3s")], routes=[route("r1", "c1"), route("r2", "c1")],
                      endpoints=[cla("c1", 9001)]))
        R.check("delta: an unsubscribed resource is not pushed", de.drain() == [])
        got = a.drain(0.3)
        R.check("SotW: an EDS change goes to no stream that did not subscribe", got == [],
                [(g.type_url, g.version_info) for g in got])

        # --- reloads
        m = log.mark()
        write_snapshot(None, raw='version: "v7"\nclusters:\n- name: c1\n  conect_timeout: 1s\n')
        R.check("a bad snapshot is rejected with the reason",
                log.wait(r"^RELOAD rejected: .*clusters\[0\].*conect_timeout", m))
        R.check("a rejected snapshot pushes nothing", a.drain() == [] and d.drain(0.1) == [])
        n = sotw()
        n.send(req(CDS, node="n5"))
        r = n.recv()
        R.check("the old snapshot stays in force", r is not None and r.version_info == "v6", r)
        write_snapshot(snapshot("v7", clusters=[cluster("c1", "3s")], routes=[route("r1", "c1"), route("r2", "c1")],
                                endpoints=[cla("c1", 9001)]))
        m = log.mark()
        proc.send_signal(signal.SIGHUP)
        R.check("SIGHUP reloads", log.wait(r"^RELOAD version=v7 .*trigger=SIGHUP", m, 3))
        R.check("an unchanged reload pushes nothing", a.drain() == [])

        # --- bad clients
        raw = XdsCall(channel, ADS + "StreamAggregatedResources", lambda b: b, API.DiscoveryResponse.FromString)
        calls.append(raw)
        m = log.mark()
        raw.send(b"\xff\xff\xff\xff")
        R.check("a malformed request ends the stream with INVALID_ARGUMENT",
                raw.error() == grpc.StatusCode.INVALID_ARGUMENT and log.wait(r"^BAD request ", m))
        x = sotw()
        x.send(req("", node="n6"))
        R.check("ADS without type_url ends the stream with INVALID_ARGUMENT",
                x.error() == grpc.StatusCode.INVALID_ARGUMENT)
        u = sotw()
        m = log.mark()
        u.send(req(SECRET, names=["s"], node="n7"))
        u.send(req(CDS))
        r = u.recv()
        R.check("an unknown type is logged and the stream kept",
                log.wait(r"^UNKNOWN type_url=%s node=n7 " % re.escape(SECRET), m)
                and r is not None and r.type_url == CDS, r)
        m = log.mark()
        u.close()
        R.check("stream close logged", log.wait(r"^CLOSE stream=\d+ type=ADS mode=sotw node=n7 ", m))
        R.check("the server still serves", proc.poll() is None)

        for c in calls:
            c.close()
        channel.close()
        m = log.mark()
        proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(5)
        except subprocess.TimeoutExpired:
            rc = None
        R.check("SIGTERM exits 0", rc == 0, rc)
        R.check("no errors logged", not log.find(r"^(ERROR|Traceback)"), log.find(r"^(ERROR|Traceback).*"))
        return R
    finally:
        for c in calls:
            c.close()
        if proc and proc.poll() is None:
            proc.kill()
            proc.wait()
        if R.failed and os.path.exists(log_path):
            sys.stdout.write("# server log:\n" + "".join("# " + l for l in open(log_path)))
        if args.keep or R.failed:
            print("# kept %s" % tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    try:
        res = main()
    except Exception:
        import traceback
        traceback.print_exc()
        res = RESULTS
        res.check("selftest ran to the end", False, "exception above")
    print("%d passed, %d failed" % (res.passed, res.failed))
    sys.exit(1 if res.failed else 0)
