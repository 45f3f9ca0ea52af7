#!/usr/bin/python3
"""Seeds for fuzz_xds: the snapshots of tests/xds and examples/xds as the
control plane would send them, one DiscoveryResponse (first byte 0) and one
DeltaDiscoveryResponse (first byte 1) per resource type, written into a
corpus directory. Generated at fuzzing time, never committed.

usage: xds_seeds.py OUT_DIR GEN_DIR SNAPSHOT...
"""

import os
import sys

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "xds"))
import xds_proto  # noqa: E402
import xds_server  # noqa: E402


def main():
    out, gen = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)
    api = xds_proto.load(xds_proto.default_api_dir(), gen)
    n = 0
    for path in sys.argv[3:]:
        snap = xds_server.load_snapshot(api, path)
        for t, by_name in snap.resources.items():
            if not by_name:
                continue
            sotw = api.DiscoveryResponse(version_info=snap.version, type_url=t, nonce="1")
            delta = api.DeltaDiscoveryResponse(system_version_info=snap.version, type_url=t, nonce="1")
            for e in by_name.values():
                sotw.resources.append(e.any)
                r = delta.resources.add()
                r.name, r.version = e.name, e.version
                r.resource.CopyFrom(e.any)
            for tag, msg in ((b"\0", sotw), (b"\1", delta)):
                with open(os.path.join(out, "seed-%d" % n), "wb") as f:
                    f.write(tag + msg.SerializeToString())
                n += 1
    print("%d seeds" % n)
    return 0 if n else 1


if __name__ == "__main__":
    sys.exit(main())
