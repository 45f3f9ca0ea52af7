#!/usr/bin/env python3
"""A grpc.health.v1 Health service on python3-grpcio, for health_h2.sh.

Debian's python3-grpcio has no grpc_health package, so Check is a generic
handler with the protobuf encoded by hand: HealthCheckRequest{string
service = 1}, HealthCheckResponse{ServingStatus status = 1} (08 01 is
SERVING). The status of a service is read, at each call, from
STATE_DIR/<service or _> (SERVING, NOT_SERVING; no file: SERVICE_UNKNOWN),
and every call appends "<service or _>" to STATE_DIR/calls.

  grpc_health_server.py PORT STATE_DIR
"""
import os
import sys
import time
from concurrent import futures

import grpc

STATUS = {"UNKNOWN": 0, "SERVING": 1, "NOT_SERVING": 2, "SERVICE_UNKNOWN": 3}


def service_of(req):
    # field 1, wire type 2: 0a <varint length> <bytes>
    i, name = 0, b""
    while i < len(req):
        key = req[i]
        i += 1
        n, shift = 0, 0
        while True:
            b = req[i]
            i += 1
            n |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                break
        if key == 0x0A:
            name = req[i:i + n]
        if (key & 7) == 2:
            i += n
    return name.decode()


def main():
    port, state = int(sys.argv[1]), sys.argv[2]

    def check(req, ctx):
        svc = service_of(req) or "_"
        with open(os.path.join(state, "calls"), "a") as f:
            f.write(svc + "\n")
        try:
            with open(os.path.join(state, svc)) as f:
                st = STATUS[f.read().strip()]
        except FileNotFoundError:
            st = STATUS["SERVICE_UNKNOWN"]
        return bytes([0x08, st]) if st else b""

    handler = grpc.method_handlers_generic_handler("grpc.health.v1.Health", {
        "Check": grpc.unary_unary_rpc_method_handler(check, request_deserializer=None, response_serializer=None)})
    srv = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    srv.add_generic_rpc_handlers((handler,))
    srv.add_insecure_port("127.0.0.1:%d" % port)
    srv.start()
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
