#!/usr/bin/python3
"""A small xDS control plane for tern's tests and examples.

Serves snapshots of Envoy v3 resources (Listener, RouteConfiguration,
Cluster, ClusterLoadAssignment) read from YAML over plaintext gRPC on
127.0.0.1: ADS and the per-type services, state of the world and delta.
Reloads on SIGHUP and when the snapshot changes on disk; logs every stream,
response, ACK and NACK on stderr. See README.md beside this file.

usage: xds_server.py --port PORT --snapshot FILE|DIR [--api-dir DIR]
                     [--gen-dir DIR] [--ready-file FILE]
"""

import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree

import argparse
import asyncio
import functools
import hashlib
import itertools
import json
import os
import re
import shutil
import signal
import tempfile
import traceback

import grpc
import yaml
from google.protobuf import any_pb2, json_format
from google.protobuf.message import DecodeError

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import xds_proto  # noqa: E402
from xds_proto import CDS, EDS, LDS, RDS, SHORT  # noqa: E402

CONTROL_PLANE_ID = "tern-xds-test-server"

# LDS and CDS are the only wildcard types; in SotW their responses carry the
# complete set of subscribed resources (an absent one is deleted), while RDS
# and EDS responses carry only what they name (an absent one is untouched).
WILDCARD_TYPES = (LDS, CDS)
# Make-before-break order for pushes after a reload (xDS protocol docs).
PUSH_ORDER = (CDS, EDS, LDS, RDS)

# Snapshot keys -> type URL, and the field that names each resource.
SNAPSHOT_KEYS = {"listeners": LDS, "routes": RDS, "clusters": CDS, "endpoints": EDS}
NAME_FIELD = {LDS: "name", RDS: "name", CDS: "name", EDS: "cluster_name"}
SNAPSHOT_EXTS = (".yaml", ".yml", ".json")


def log(line):
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def clean(s):
    """One log line stays one line."""
    return str(s).replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")


def names_field(names):
    return ",".join(clean(n) for n in names) if names else "-"


# ---------------------------------------------------------------- snapshots


class Entry:
    __slots__ = ("name", "version", "any")

    def __init__(self, name, version, any_msg):
        self.name = name
        self.version = version
        self.any = any_msg


class Snapshot:
    def __init__(self, version, resources):
        self.version = version
        self.resources = resources  # type URL -> {name: Entry}

    def counts(self):
        return " ".join("%s=%d" % (k, len(self.resources[t])) for k, t in SNAPSHOT_KEYS.items())

    def same_content(self, other):
        return all({n: e.version for n, e in self.resources[t].items()}
                   == {n: e.version for n, e in other.resources[t].items()}
                   for t in SNAPSHOT_KEYS.values())


class SnapshotError(Exception):
    pass


def snapshot_files(path):
    if os.path.isdir(path):
        return [os.path.join(path, f) for f in sorted(os.listdir(path))
                if f.endswith(SNAPSHOT_EXTS) and not f.startswith(".")]
    return [path]


def snapshot_signature(path):
    """What the poller compares: identity, size and mtime of every file."""
    sig = []
    try:
        st = os.stat(path)
        sig.append((path, st.st_ino, st.st_size, st.st_mtime_ns))
        if os.path.isdir(path):
            for f in snapshot_files(path):
                st = os.stat(f)
                sig.append((f, st.st_ino, st.st_size, st.st_mtime_ns))
    except OSError as e:
        sig.append(("error", str(e)))
    return tuple(sig)


# Reading a snapshot file: what yaml.safe_load returns, fast. PyYAML's pure
# Python parser takes ~13 s of CPU for 10,000 clusters and routes (the whole
# load took ~14 s); a file in the JSON subset below is read by the json module
# (~0.3 s), other YAML by libyaml when PyYAML has it (~5 s). Either way the
# document is the one yaml.safe_load would build; text the fast paths do not
# take, and any error, goes to yaml.safe_load itself, so problems are
# reported in its words. (One difference: a document nested deeper than
# Python's recursion limit, which yaml.safe_load fails on, now loads and is
# refused by the checks after it, such as json_format's depth limit.)

class _NotPlain(ValueError):
    """JSON that YAML 1.1 would read differently (or that needs checking)."""


# A JSON float YAML 1.1 also reads as that float: a dot, and an exponent
# (if any) with its sign. Others ("1e5", "1.5e5") are strings to PyYAML.
_YAML_FLOAT = re.compile(r"-?[0-9]+\.[0-9]*(?:[eE][-+][0-9]+)?")
# Printable ASCII and newlines only: no tabs (PyYAML's scanner refuses them
# between tokens), no CR, no characters its reader refuses.
_JSON_BAD_CHAR = re.compile(r"[^\x20-\x7e\n]")
# \uD800-\uDFFF: json joins surrogate pairs, PyYAML keeps two code points.
_JSON_SURROGATE = re.compile(r"\\u[dD][89a-fA-F]")
# A key whose ':' is on a later line is no key to YAML (a simple key ends
# at the line's end). A raw newline is never inside a JSON string, so the
# quote before it closes one.
_JSON_KEY_NEWLINE = re.compile(r'"[ \n]*\n[ \n]*:')
_JSON_ESCAPE = re.compile(r"\\.")
# Where libyaml and PyYAML's own parser part ways (libyaml takes a tab
# between tokens, "?" inside a flow scalar, a byte-order mark past the
# start): such text goes to PyYAML's parser.
_LIBYAML_DIFFERS = re.compile("[\t?\ufeff]")


def _json_float(s):
    if not _YAML_FLOAT.fullmatch(s):
        raise _NotPlain(s)
    return float(s)


def _json_constant(s):
    raise _NotPlain(s)  # NaN, Infinity: not JSON's, nor YAML's spelling


def json_doc(text):
    """The document in text when it is a JSON object that yaml.safe_load
    reads as the same value, else None. The JSON side of that: ASCII without
    tabs, integers, floats YAML also calls floats, no surrogate escapes, and
    every key at most ~1000 characters before its ':' on the same line (YAML
    caps a flow key at 1024); strings and runs between them under 500
    characters bound that."""
    if not text.lstrip(" \n").startswith("{") or _JSON_BAD_CHAR.search(text) \
            or _JSON_KEY_NEWLINE.search(text):
        return None
    plain = text
    if "\\" in text:
        if _JSON_SURROGATE.search(text):
            return None
        # Same length, no escaped quotes: every '"' left delimits a string.
        plain = _JSON_ESCAPE.sub("xx", text)
    if max(map(len, plain.split('"'))) >= 500:
        return None
    try:
        doc = json.loads(text, parse_float=_json_float, parse_constant=_json_constant)
    except (ValueError, RecursionError):
        return None
    return doc if isinstance(doc, dict) else None


def read_doc(fn):
    """yaml.safe_load of the file fn: the same value, or the same exception."""
    try:
        with open(fn, encoding="utf-8") as f:
            text = f.read()
        doc = json_doc(text)
        if doc is not None:
            return doc
        if getattr(yaml, "CSafeLoader", None) is not None and not _LIBYAML_DIFFERS.search(text):
            return yaml.load(text, Loader=yaml.CSafeLoader)
    except Exception:
        pass  # whatever it is, yaml.safe_load below says it as before
    with open(fn, encoding="utf-8") as f:
        return yaml.safe_load(f)


def load_snapshot(api, path):
    """Parses a snapshot file (or every *.yaml/*.yml/*.json in a directory,
    merged) into a Snapshot; raises SnapshotError naming the first problem."""
    version = None
    raw = {t: [] for t in SNAPSHOT_KEYS.values()}  # type -> [(where, dict)]
    files = snapshot_files(path)
    if not files:
        raise SnapshotError("%s: no snapshot files" % path)
    for fn in files:
        try:
            doc = read_doc(fn)
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
            raise SnapshotError("%s: %s" % (fn, clean(e)))
        if doc is None:
            continue
        if not isinstance(doc, dict):
            raise SnapshotError("%s: top level must be a mapping" % fn)
        for key, val in doc.items():
            if key == "version":
                if isinstance(val, (dict, list)) or val is None:
                    raise SnapshotError("%s: version must be a string" % fn)
                if version is not None and str(val) != version:
                    raise SnapshotError("%s: version %r conflicts with %r" % (fn, str(val), version))
                version = str(val)
            elif key in SNAPSHOT_KEYS or key == "resources":
                if val is None:
                    continue
                if not isinstance(val, list):
                    raise SnapshotError("%s: %s must be a list" % (fn, key))
                for i, item in enumerate(val):
                    where = "%s: %s[%d]" % (fn, key, i)
                    if not isinstance(item, dict):
                        raise SnapshotError("%s: must be a mapping" % where)
                    if key == "resources":
                        # Envoy's file-subscription form: each item has "@type".
                        item = dict(item)
                        t = item.pop("@type", None)
                        if t not in SHORT:
                            raise SnapshotError("%s: \"@type\" must be one of %s, not %r"
                                                % (where, ", ".join(SHORT), t))
                    else:
                        t = SNAPSHOT_KEYS[key]
                    raw[t].append((where, item))
            else:
                raise SnapshotError("%s: unknown key %r (expected version, %s, resources)"
                                    % (fn, key, ", ".join(SNAPSHOT_KEYS)))
    resources = {}
    digest = hashlib.sha256()
    for t in SNAPSHOT_KEYS.values():
        cls = api.resource_classes[t]
        by_name = {}
        for where, item in raw[t]:
            msg = cls()
            try:
                json_format.ParseDict(item, msg)
            except (json_format.ParseError, TypeError, ValueError, KeyError) as e:
                # protobuf appends the list of every field name; the first line says it.
                why = str(e).split("\n")[0].strip() or type(e).__name__
                raise SnapshotError("%s: %s: %s" % (where, cls.DESCRIPTOR.full_name, clean(why)))
            name = getattr(msg, NAME_FIELD[t])
            if not name:
                raise SnapshotError("%s: %s has no %s" % (where, cls.DESCRIPTOR.full_name, NAME_FIELD[t]))
            if name in by_name:
                raise SnapshotError("%s: duplicate %s %r" % (where, SHORT[t], name))
            blob = msg.SerializeToString(deterministic=True)
            rv = hashlib.sha256(blob).hexdigest()[:16]
            a = any_pb2.Any()
            a.Pack(msg)
            by_name[name] = Entry(name, rv, a)
            digest.update(("%s\0%s\0%s\0" % (t, name, rv)).encode())
        resources[t] = by_name
    if version is None:
        version = "auto-" + digest.hexdigest()[:12]
    elif version == "":
        raise SnapshotError("%s: version is empty" % path)
    return Snapshot(version, resources)


# ------------------------------------------------------------------ streams


class StreamError(Exception):
    def __init__(self, code, msg):
        super().__init__(msg)
        self.code = code
        self.msg = msg


class Malformed:
    """What the request deserializer returns for bytes that do not parse."""

    def __init__(self, err):
        self.err = err


class _Eof:
    pass


class _Abort:
    def __init__(self, code, msg):
        self.code = code
        self.msg = msg


ABSENT = object()  # delta: the client was told this name does not exist


class SotwState:
    def __init__(self):
        self.wildcard = False
        self.legacy = False  # wildcard by the legacy rule (never named)
        self.names = set()
        self.sent = None  # {name: resource version} of the last response
        self.nonce = None  # nonce of the last response
        self.version = None  # version_info of the last response
        self.awaiting = False  # last response not yet ACKed/NACKed


class DeltaState:
    def __init__(self):
        self.wildcard = False
        self.names = set()
        self.known = {}  # name -> version the client holds, or ABSENT
        self.force = set()  # names the next response must mention
        self.outstanding = {}  # nonce -> system_version_info


class Stream:
    """One xDS RPC: its subscriptions per type and what it was sent."""

    ids = itertools.count(1)

    def __init__(self, server, rpc, delta, fixed_type):
        self.server = server
        self.id = next(Stream.ids)
        self.rpc = rpc
        self.delta = delta
        self.fixed_type = fixed_type  # per-type service's type URL, None for ADS
        self.kind = SHORT[fixed_type] if fixed_type else "ADS"
        self.node = None
        self.requests = 0   # requests on the stream,
        self.with_node = 0  # and how many of them carried a node
        self.out = asyncio.Queue()
        self.types = {}
        self.unknown = set()

    def tag(self):
        return "node=%s stream=%d" % (clean(self.node or "-"), self.id)

    # -- requests

    def _open(self, req):
        self.requests += 1
        self.with_node += req.HasField("node")
        if self.node is None:
            self.node = req.node.id if req.HasField("node") and req.node.id else "-"
            log("OPEN stream=%d type=%s mode=%s node=%s rpc=%s"
                % (self.id, self.kind, "delta" if self.delta else "sotw", clean(self.node), self.rpc))

    def _type_url(self, type_url):
        """The request's type, or None when it is one this server does not
        serve (logged once; the stream stays open)."""
        if self.fixed_type:
            if type_url and type_url != self.fixed_type:
                raise StreamError(grpc.StatusCode.INVALID_ARGUMENT,
                                  "type_url %s on the %s service" % (type_url, self.kind))
            return self.fixed_type
        if not type_url:
            raise StreamError(grpc.StatusCode.INVALID_ARGUMENT, "type_url is required on ADS")
        if type_url not in SHORT:
            if type_url not in self.unknown:
                self.unknown.add(type_url)
                log("UNKNOWN type_url=%s %s (no resources of this type; ignored)"
                    % (clean(type_url), self.tag()))
            return None
        return type_url

    def on_request(self, req):
        self._open(req)
        t = self._type_url(req.type_url)
        if t is None:
            return
        if self.delta:
            self._delta_request(t, req)
        else:
            self._sotw_request(t, req)

    def on_snapshot(self):
        for t in PUSH_ORDER:
            st = self.types.get(t)
            if st is None:
                continue
            if self.delta:
                if not st.outstanding:
                    self._delta_evaluate(t, st, first=False)
            elif not st.awaiting:
                self._sotw_evaluate(t, st)

    def _send(self, msg):
        self.out.put_nowait(msg)

    def _nonce(self):
        return self.server.next_nonce()

    # -- state of the world

    def _sotw_request(self, t, req):
        short = SHORT[t]
        st = self.types.get(t)
        first = st is None
        if first:
            st = self.types[t] = SotwState()
        nonce = req.response_nonce
        if st.nonce is not None:
            if nonce != st.nonce:
                # Superseded by a response the client had not seen yet.
                log("STALE type=%s nonce=%s expected=%s %s (ignored)"
                    % (short, clean(nonce or "-"), st.nonce, self.tag()))
                return
            if not st.awaiting:
                pass  # answered already: a subscription update at this nonce
            elif req.HasField("error_detail"):
                log("NACK type=%s version=%s nonce=%s %s client_version=%s error=%s"
                    % (short, st.version, nonce, self.tag(), clean(req.version_info or "-"),
                       clean(req.error_detail.message)))
            else:
                log("ACK type=%s version=%s nonce=%s %s" % (short, st.version, nonce, self.tag()))
                if req.version_info != st.version:
                    log("WARN ACK type=%s nonce=%s carries version_info=%s, sent %s %s"
                        % (short, nonce, clean(req.version_info or "-"), st.version, self.tag()))
            st.awaiting = False
        elif nonce:
            log("STALE type=%s nonce=%s expected=- %s (nothing sent yet; treated as a new subscription)"
                % (short, clean(nonce), self.tag()))
        self._sotw_subscribe(t, st, list(req.resource_names), first)
        self._sotw_evaluate(t, st)

    def _sotw_subscribe(self, t, st, raw, first):
        wild_ok = t in WILDCARD_TYPES
        if "*" in raw and not wild_ok:
            log("WARN type=%s subscribes to \"*\": no wildcard for this type, taken as a name %s"
                % (SHORT[t], self.tag()))
        if raw:
            st.legacy = False
        elif first and wild_ok:
            st.legacy = True
        wildcard = (wild_ok and "*" in raw) or st.legacy
        names = set(raw) - ({"*"} if wild_ok else set())
        if st.sent is not None:
            for n in names - st.names:
                st.sent.pop(n, None)  # newly requested: sent again
            if not wildcard:
                for n in list(st.sent):
                    if n not in names:
                        del st.sent[n]
        if first or wildcard != st.wildcard or names != st.names:
            st.wildcard, st.names = wildcard, names
            log("SUBSCRIBE type=%s wildcard=%d names=%s %s"
                % (SHORT[t], wildcard, names_field(sorted(names)), self.tag()))

    def _sotw_evaluate(self, t, st):
        if st.awaiting:
            return  # sent again once the client answers the last response
        snap = self.server.snapshot
        res = snap.resources[t]
        chosen = set(res) if st.wildcard else set()
        chosen |= {n for n in st.names if n in res}
        desired = {n: res[n].version for n in chosen}
        full_state = t in WILDCARD_TYPES
        if st.sent is None:
            send = full_state or bool(desired)
        else:
            send = desired != st.sent and (full_state or bool(desired))
        if not send:
            return
        order = sorted(chosen)
        resp = self.server.api.DiscoveryResponse(version_info=snap.version, type_url=t,
                                                 nonce=self._nonce())
        resp.control_plane.identifier = CONTROL_PLANE_ID
        for n in order:
            resp.resources.append(res[n].any)
        st.sent, st.nonce, st.version, st.awaiting = desired, resp.nonce, snap.version, True
        log("SEND type=%s version=%s nonce=%s resources=%d %s names=%s"
            % (SHORT[t], snap.version, resp.nonce, len(order), self.tag(), names_field(order)))
        self._send(resp)

    # -- incremental

    def _delta_request(self, t, req):
        short = SHORT[t]
        st = self.types.get(t)
        first = st is None
        wild_ok = t in WILDCARD_TYPES
        sub, unsub = list(req.resource_names_subscribe), list(req.resource_names_unsubscribe)
        if first:
            st = self.types[t] = DeltaState()
            if wild_ok and not sub and not unsub:
                st.wildcard = True  # legacy wildcard
            st.known.update(req.initial_resource_versions)
        elif req.initial_resource_versions:
            log("WARN type=%s initial_resource_versions after the first request ignored %s"
                % (short, self.tag()))
        nonce = req.response_nonce
        if nonce:
            if nonce in st.outstanding:
                version = st.outstanding.pop(nonce)
                if req.HasField("error_detail"):
                    log("NACK type=%s version=%s nonce=%s %s error=%s"
                        % (short, version, nonce, self.tag(), clean(req.error_detail.message)))
                else:
                    log("ACK type=%s version=%s nonce=%s %s" % (short, version, nonce, self.tag()))
            else:
                # Delta subscription changes count even with a stale nonce.
                log("STALE type=%s nonce=%s expected=%s %s (ACK/NACK ignored, subscriptions applied)"
                    % (short, clean(nonce), names_field(sorted(st.outstanding)), self.tag()))
        before = (st.wildcard, set(st.names))
        for n in sub:
            if n == "*" and wild_ok:
                st.wildcard = True
                continue
            if n == "*":
                log("WARN type=%s subscribes to \"*\": no wildcard for this type, taken as a name %s"
                    % (short, self.tag()))
            st.names.add(n)
            if not first:
                st.force.add(n)  # must be sent even if the client seems to have it
        for n in unsub:
            if n == "*" and wild_ok:
                st.wildcard = False
                continue
            st.names.discard(n)
            if st.wildcard:
                st.force.add(n)  # tell whether the wildcard still covers it
            else:
                st.known.pop(n, None)
        if first or before != (st.wildcard, st.names):
            log("SUBSCRIBE type=%s wildcard=%d names=%s %s"
                % (short, st.wildcard, names_field(sorted(st.names)), self.tag()))
        self._delta_evaluate(t, st, first)

    def _delta_evaluate(self, t, st, first):
        snap = self.server.snapshot
        res = snap.resources[t]
        cand = set(st.known) | st.names | st.force | (set(res) if st.wildcard else set())
        updates, removed = [], []
        for n in sorted(cand):
            interested = st.wildcard or n in st.names
            forced = n in st.force
            if not interested and not forced:
                st.known.pop(n, None)  # unsubscribed: the client forgets it
                continue
            e = res.get(n)
            have = st.known.get(n)
            if e is not None:
                if forced or have != e.version:
                    updates.append(e)
                    st.known[n] = e.version
            elif forced or (n in st.known and have is not ABSENT) or (n in st.names and n not in st.known):
                removed.append(n)
                if n in st.names:
                    st.known[n] = ABSENT
                else:
                    st.known.pop(n, None)
        st.force.clear()
        if not updates and not removed and not (first and st.wildcard):
            return
        resp = self.server.api.DeltaDiscoveryResponse(system_version_info=snap.version, type_url=t,
                                                      nonce=self._nonce())
        resp.control_plane.identifier = CONTROL_PLANE_ID
        for e in updates:
            r = resp.resources.add()
            r.name, r.version = e.name, e.version
            r.resource.CopyFrom(e.any)
        resp.removed_resources.extend(removed)
        st.outstanding[resp.nonce] = snap.version
        log("DSEND type=%s version=%s nonce=%s resources=%d removed=%d %s names=%s removed_names=%s"
            % (SHORT[t], snap.version, resp.nonce, len(updates), len(removed), self.tag(),
               names_field([e.name for e in updates]), names_field(removed)))
        self._send(resp)

    # -- the RPC

    async def read_requests(self, requests):
        try:
            async for req in requests:
                if isinstance(req, Malformed):
                    log("BAD request %s: %s" % (self.tag(), clean(req.err)))
                    self._send(_Abort(grpc.StatusCode.INVALID_ARGUMENT, "malformed request: %s" % req.err))
                    return
                try:
                    self.on_request(req)
                except StreamError as e:
                    log("BAD request %s: %s" % (self.tag(), clean(e.msg)))
                    self._send(_Abort(e.code, e.msg))
                    return
                except Exception as e:  # a bug here must not take the server down
                    log("ERROR %s: %s" % (self.tag(), clean(traceback.format_exc())))
                    self._send(_Abort(grpc.StatusCode.INTERNAL, "xds_server error: %s" % e))
                    return
            self._send(_Eof())
        except asyncio.CancelledError:
            raise
        except Exception as e:
            self._send(_Abort(grpc.StatusCode.CANCELLED, "read failed: %s" % e))


async def serve_stream(xds, path, delta, fixed_type, requests, context):
    """The body of every xDS RPC (an async generator, as grpc.aio wants):
    a reader task feeds requests to the Stream, responses come back through
    its queue, and an _Eof/_Abort ends the RPC."""
    stream = Stream(xds, path, delta, fixed_type)
    xds.streams.add(stream)
    reader = asyncio.ensure_future(stream.read_requests(requests))
    reason = "cancelled"
    try:
        while True:
            item = await stream.out.get()
            if isinstance(item, _Eof):
                reason = "client closed"
                break
            if isinstance(item, _Abort):
                reason = "%s: %s" % (item.code.name, item.msg)
                context.set_code(item.code)
                context.set_details(item.msg)
                break
            yield item
    finally:
        reader.cancel()
        xds.streams.discard(stream)
        log("CLOSE stream=%d type=%s mode=%s node=%s reason=%s requests=%d with_node=%d"
            % (stream.id, stream.kind, "delta" if delta else "sotw",
               clean(stream.node or "-"), clean(reason), stream.requests, stream.with_node))


# ------------------------------------------------------------------- server


class XdsServer:
    def __init__(self, api, snapshot_path, snapshot, signature):
        self.api = api
        self.snapshot_path = snapshot_path
        self.snapshot = snapshot
        self.streams = set()
        self.nonces = itertools.count(1)
        self.signature = signature  # of the files the snapshot was read from

    def next_nonce(self):
        return str(next(self.nonces))

    def reload(self, why):
        self.signature = snapshot_signature(self.snapshot_path)
        try:
            snap = load_snapshot(self.api, self.snapshot_path)
        except SnapshotError as e:
            log("RELOAD rejected: %s (keeping version %s)" % (e, self.snapshot.version))
            return False
        except Exception as e:
            log("RELOAD rejected: %s: %s (keeping version %s)"
                % (type(e).__name__, clean(e), self.snapshot.version))
            return False
        old = self.snapshot
        if snap.version == old.version and not snap.same_content(old):
            log("WARN snapshot content changed but version stays %s" % snap.version)
        self.snapshot = snap
        log("RELOAD version=%s %s trigger=%s" % (snap.version, snap.counts(), why))
        for s in list(self.streams):
            try:
                s.on_snapshot()
            except Exception:
                log("ERROR %s: %s" % (s.tag(), clean(traceback.format_exc())))
        return True

    def _deserializer(self, cls):
        def parse(data):
            try:
                return cls.FromString(data)
            except (DecodeError, ValueError, RuntimeError) as e:
                return Malformed(str(e) or "cannot decode %s" % cls.DESCRIPTOR.full_name)
        return parse

    def _method(self, path, delta, fixed_type):
        api = self.api
        req_cls = api.DeltaDiscoveryRequest if delta else api.DiscoveryRequest
        resp_cls = api.DeltaDiscoveryResponse if delta else api.DiscoveryResponse

        handler = functools.partial(serve_stream, self, path, delta, fixed_type)
        return grpc.stream_stream_rpc_method_handler(
            handler, request_deserializer=self._deserializer(req_cls),
            response_serializer=resp_cls.SerializeToString)

    def handlers(self):
        out = []
        svc = xds_proto.ADS_SERVICE
        out.append(grpc.method_handlers_generic_handler(svc, {
            "StreamAggregatedResources": self._method("/%s/StreamAggregatedResources" % svc, False, None),
            "DeltaAggregatedResources": self._method("/%s/DeltaAggregatedResources" % svc, True, None),
        }))
        for svc, sotw, delta, t in xds_proto.PER_TYPE_SERVICES:
            out.append(grpc.method_handlers_generic_handler(svc, {
                sotw: self._method("/%s/%s" % (svc, sotw), False, t),
                delta: self._method("/%s/%s" % (svc, delta), True, t),
            }))
        return out


async def watch_snapshot(xds, interval):
    """Reloads when a file's mtime, size or inode changed since the last load
    (SIGHUP's included); a rejected load is retried on the next change only."""
    while True:
        await asyncio.sleep(interval)
        if snapshot_signature(xds.snapshot_path) != xds.signature:
            xds.reload("mtime")


async def run(args, api, snap, signature):
    xds = XdsServer(api, args.snapshot, snap, signature)
    # No SO_REUSEPORT: a second server on a busy port must fail, not share it.
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    server.add_generic_rpc_handlers(tuple(xds.handlers()))
    try:
        port = server.add_insecure_port("127.0.0.1:%d" % args.port)
    except RuntimeError as e:
        log("xds_server: cannot listen on 127.0.0.1:%d: %s" % (args.port, e))
        return 1
    if not port:
        log("xds_server: cannot listen on 127.0.0.1:%d" % args.port)
        return 1
    await server.start()
    log("xds_server listening on 127.0.0.1:%d" % port)
    if args.ready_file:
        tmp = args.ready_file + ".tmp"
        with open(tmp, "w") as f:
            f.write("%d\n" % port)
        os.replace(tmp, args.ready_file)

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, lambda: xds.reload("SIGHUP"))
    watcher = asyncio.ensure_future(watch_snapshot(xds, args.poll))
    await stop.wait()
    log("xds_server stopping")
    watcher.cancel()
    await server.stop(0.5)
    log("xds_server stopped")
    return 0


def main():
    try:
        sys.stderr.reconfigure(line_buffering=True)
    except AttributeError:
        pass
    ap = argparse.ArgumentParser(description="xDS control plane for tern's tests")
    ap.add_argument("--port", type=int, required=True, help="TCP port on 127.0.0.1 (0: any free one)")
    ap.add_argument("--snapshot", required=True, help="snapshot YAML file, or a directory of them")
    ap.add_argument("--api-dir", default=xds_proto.default_api_dir(),
                    help="tern's api/ directory (default: ../../api from this script)")
    ap.add_argument("--gen-dir", help="where protoc's Python output goes (default: a temp dir)")
    ap.add_argument("--ready-file", help="written with the port once serving")
    ap.add_argument("--poll", type=float, default=0.2, help=argparse.SUPPRESS)
    args = ap.parse_args()

    tmp_gen = None
    gen_dir = args.gen_dir
    if not gen_dir:
        gen_dir = tmp_gen = tempfile.mkdtemp(prefix="xds-gen-")
    try:
        try:
            api = xds_proto.load(args.api_dir, gen_dir)
        except (RuntimeError, OSError) as e:
            log("xds_server: %s" % e)
            return 2
        signature = snapshot_signature(args.snapshot)
        try:
            snap = load_snapshot(api, args.snapshot)
        except SnapshotError as e:
            log("xds_server: bad snapshot: %s" % e)
            return 1
        log("LOAD version=%s %s" % (snap.version, snap.counts()))
        return asyncio.run(run(args, api, snap, signature))
    finally:
        if tmp_gen:
            shutil.rmtree(tmp_gen, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
