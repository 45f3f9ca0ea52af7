"""Python protobuf modules for tern's api/, generated with protoc at run time.

Shared by xds_server.py and selftest.py. Nothing generated is ever written
into the source tree: the modules go to GEN_DIR/<hash of api/>/, built in a
private directory and renamed into place, so several processes may share one
GEN_DIR (the selftest and the server it starts do).
"""

import hashlib
import importlib
import os
import shutil
import subprocess
import sys
import tempfile

# Where the well-known types (google/protobuf/*.proto) live on Debian.
WKT_INCLUDE = "/usr/include"

LDS = "type.googleapis.com/envoy.config.listener.v3.Listener"
RDS = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
CDS = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
EDS = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"

SHORT = {LDS: "LDS", RDS: "RDS", CDS: "CDS", EDS: "EDS"}

# The per-type services: (service, SotW method, delta method, type URL).
PER_TYPE_SERVICES = [
    ("envoy.service.listener.v3.ListenerDiscoveryService", "StreamListeners", "DeltaListeners", LDS),
    ("envoy.service.route.v3.RouteDiscoveryService", "StreamRoutes", "DeltaRoutes", RDS),
    ("envoy.service.cluster.v3.ClusterDiscoveryService", "StreamClusters", "DeltaClusters", CDS),
    ("envoy.service.endpoint.v3.EndpointDiscoveryService", "StreamEndpoints", "DeltaEndpoints", EDS),
]
ADS_SERVICE = "envoy.service.discovery.v3.AggregatedDiscoveryService"


def default_api_dir():
    here = os.path.dirname(os.path.abspath(__file__))
    return os.path.normpath(os.path.join(here, "..", "..", "api"))


def _proto_files(api_dir):
    out = []
    for root, dirs, files in os.walk(api_dir):
        dirs.sort()
        for f in sorted(files):
            if f.endswith(".proto"):
                out.append(os.path.relpath(os.path.join(root, f), api_dir))
    return out


def generate(api_dir, gen_dir):
    """Runs protoc over every .proto under api_dir unless GEN_DIR already
    holds the output for exactly these files; returns the directory to put
    on sys.path. Raises RuntimeError with protoc's message on failure."""
    files = _proto_files(api_dir)
    if not files:
        raise RuntimeError("no .proto files under %s" % api_dir)
    h = hashlib.sha256()
    for rel in files:
        h.update(rel.encode() + b"\0")
        with open(os.path.join(api_dir, rel), "rb") as f:
            h.update(f.read() + b"\0")
    final = os.path.join(gen_dir, h.hexdigest()[:16])
    if os.path.isfile(os.path.join(final, ".complete")):
        return final
    os.makedirs(gen_dir, exist_ok=True)
    work = tempfile.mkdtemp(prefix=".gen-", dir=gen_dir)
    try:
        cmd = ["protoc", "--python_out=" + work, "-I", api_dir, "-I", WKT_INCLUDE] + files
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if p.returncode != 0:
            raise RuntimeError("protoc failed: " + (p.stderr.strip() or "exit %d" % p.returncode))
        open(os.path.join(work, ".complete"), "w").close()
        try:
            os.rename(work, final)
        except OSError:
            # Another process won the race; its output is the same.
            if not os.path.isfile(os.path.join(final, ".complete")):
                raise
    finally:
        if os.path.isdir(work):
            shutil.rmtree(work, ignore_errors=True)
    return final


class Api:
    """The generated modules, all imported (so that json_format resolves
    every "@type" in the default pool), and the classes the xDS code uses."""

    def __init__(self, path):
        if path not in sys.path:
            sys.path.insert(0, path)
        self.modules = {}
        for root, dirs, files in os.walk(path):
            dirs.sort()
            for f in sorted(files):
                if f.endswith("_pb2.py"):
                    rel = os.path.relpath(os.path.join(root, f[:-3]), path)
                    name = rel.replace(os.sep, ".")
                    self.modules[name] = importlib.import_module(name)
        d = self.modules["envoy.service.discovery.v3.discovery_pb2"]
        self.DiscoveryRequest = d.DiscoveryRequest
        self.DiscoveryResponse = d.DiscoveryResponse
        self.DeltaDiscoveryRequest = d.DeltaDiscoveryRequest
        self.DeltaDiscoveryResponse = d.DeltaDiscoveryResponse
        self.Resource = d.Resource
        self.resource_classes = {
            LDS: self.modules["envoy.config.listener.v3.listener_pb2"].Listener,
            RDS: self.modules["envoy.config.route.v3.route_pb2"].RouteConfiguration,
            CDS: self.modules["envoy.config.cluster.v3.cluster_pb2"].Cluster,
            EDS: self.modules["envoy.config.endpoint.v3.endpoint_pb2"].ClusterLoadAssignment,
        }


def load(api_dir, gen_dir):
    return Api(generate(api_dir, gen_dir))
