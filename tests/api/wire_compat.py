#!/usr/bin/python3
"""Wire-compatibility check: every message, field and enum value that tern's
api/ declares (outside api/tern) must exist in the upstream Envoy API with the
same number, type and label, so a real control plane's bytes decode the same.

usage: wire_compat.py OURS.pb UPSTREAM.pb
Both are FileDescriptorSets made by `protoc --include_imports --descriptor_set_out`.
"""
import sys
from google.protobuf import descriptor_pb2

F = descriptor_pb2.FieldDescriptorProto

# Fields newer than the API snapshot the npm package carries, with the
# number and type Envoy gave them (checked against Envoy's protocol.proto).
NEWER = {
    # Envoy 1.32: HttpProtocolOptions.max_response_headers_kb
    ".envoy.config.core.v3.HttpProtocolOptions.max_response_headers_kb": (7, F.TYPE_MESSAGE,
                                                                           ".google.protobuf.UInt32Value"),
}


def load(path):
    fds = descriptor_pb2.FileDescriptorSet()
    with open(path, "rb") as f:
        fds.ParseFromString(f.read())
    msgs, enums, files = {}, {}, {}

    def walk_msg(prefix, m, fname):
        name = prefix + "." + m.name
        msgs[name] = m
        files[name] = fname
        for n in m.nested_type:
            walk_msg(name, n, fname)
        for e in m.enum_type:
            enums[name + "." + e.name] = e
            files[name + "." + e.name] = fname

    for fd in fds.file:
        pkg = "." + fd.package if fd.package else ""
        for m in fd.message_type:
            walk_msg(pkg, m, fd.name)
        for e in fd.enum_type:
            enums[pkg + "." + e.name] = e
            files[pkg + "." + e.name] = fd.name
    return msgs, enums, files


def main():
    ours_m, ours_e, ours_f = load(sys.argv[1])
    up_m, up_e, _ = load(sys.argv[2])
    errors, nfields, nmsgs = [], 0, 0
    for name, m in sorted(ours_m.items()):
        if name.startswith(".tern.") or ours_f[name].startswith("tern/"):
            continue
        nmsgs += 1
        u = up_m.get(name)
        if u is None:
            errors.append(f"{name}: message not in upstream Envoy API")
            continue
        ufields = {f.name: f for f in u.field}
        for f in m.field:
            nfields += 1
            uf = ufields.get(f.name)
            if uf is None:
                newer = NEWER.get(f"{name}.{f.name}")
                if newer is None:
                    errors.append(f"{name}.{f.name}: field not in upstream")
                elif newer != (f.number, f.type, f.type_name):
                    errors.append(f"{name}.{f.name}: {(f.number, f.type, f.type_name)!r} != Envoy's {newer!r}")
                continue
            for attr in ("number", "type", "label", "type_name"):
                a, b = getattr(f, attr), getattr(uf, attr)
                if a != b:
                    errors.append(f"{name}.{f.name}: {attr} {a!r} != upstream {b!r}")
            ours_oneof = m.oneof_decl[f.oneof_index].name if f.HasField("oneof_index") else None
            up_oneof = u.oneof_decl[uf.oneof_index].name if uf.HasField("oneof_index") else None
            if ours_oneof != up_oneof:
                errors.append(f"{name}.{f.name}: oneof {ours_oneof!r} != upstream {up_oneof!r}")
    for name, e in sorted(ours_e.items()):
        if name.startswith(".tern.") or ours_f[name].startswith("tern/"):
            continue
        u = up_e.get(name)
        if u is None:
            errors.append(f"{name}: enum not in upstream")
            continue
        uvals = {v.name: v.number for v in u.value}
        for v in e.value:
            if uvals.get(v.name) != v.number:
                errors.append(f"{name}.{v.name}: value {v.number} != upstream {uvals.get(v.name)}")
    for e in errors:
        print("wire_compat: " + e)
    print(f"wire_compat: {nmsgs} messages, {nfields} fields checked, {len(errors)} mismatches")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
