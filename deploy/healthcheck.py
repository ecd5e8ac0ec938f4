#!/usr/bin/env python3
"""Container health check: exit 0 when the gRPC server reports SERVING, 1 otherwise.

Docker's HEALTHCHECK and compose run it inside the container (Kubernetes uses its native gRPC
probe instead). It asks the standard ``grpc.health.v1.Health/Check``, which the server answers
SERVING only once the model is loaded and warmed up.

    python healthcheck.py [--address 127.0.0.1:50051] [--service NAME] [--tls-ca CA.pem]
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

DEFAULT_ADDRESS = os.environ.get("ASMSPOTTER_HEALTH_ADDRESS", "127.0.0.1:50051")


def check(
    address: str, service: str = "", timeout_s: float = 3.0, tls_ca: bytes | None = None
) -> str:
    """The server's status name (SERVING, NOT_SERVING, ...) or the gRPC error code's name."""
    if tls_ca is not None:
        channel = grpc.secure_channel(address, grpc.ssl_channel_credentials(tls_ca))
    else:
        channel = grpc.insecure_channel(address)
    with channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout_s)
        except grpc.RpcError as exc:
            return exc.code().name
    return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--address", default=DEFAULT_ADDRESS, help="HOST:PORT of the server")
    parser.add_argument("--service", default="", help="service name; empty: the whole server")
    parser.add_argument("--timeout", type=float, default=3.0, help="seconds")
    parser.add_argument("--tls-ca", help="PEM of the CA that signed the server's certificate")
    args = parser.parse_args(argv)
    ca = Path(args.tls_ca).read_bytes() if args.tls_ca else None
    status = check(args.address, args.service, args.timeout, ca)
    print(f"{args.address}: {status}")
    return 0 if status == "SERVING" else 1


if __name__ == "__main__":
    sys.exit(main())
