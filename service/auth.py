"""Bearer-token check in a server interceptor: calls without ``authorization: Bearer <token>`` get
UNAUTHENTICATED with an ErrorInfo. Health checks and reflection stay open (load balancers and
grpcurl probe them without credentials)."""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Any

import grpc

from service.errors import ServiceError, ServiceReason, abort

OPEN_PREFIXES = ("/grpc.health.v1.", "/grpc.reflection.")


class BearerTokenInterceptor(grpc.ServerInterceptor):
    def __init__(self, token: str) -> None:
        if not token:
            raise ValueError("empty bearer token")
        self._expected = f"Bearer {token}".encode()

    def _allowed(self, details: grpc.HandlerCallDetails) -> bool:
        if details.method.startswith(OPEN_PREFIXES):
            return True
        for key, value in details.invocation_metadata or ():
            if key == "authorization":
                got = value.encode() if isinstance(value, str) else value
                return hmac.compare_digest(got, self._expected)
        return False

    def intercept_service(
        self, continuation: Callable[[grpc.HandlerCallDetails], Any], details: Any
    ) -> Any:
        handler = continuation(details)
        if handler is None or self._allowed(details):
            return handler
        return _denying(handler)


def _deny(_request: Any, context: grpc.ServicerContext) -> Any:
    abort(
        context,
        ServiceError(
            ServiceReason.UNAUTHENTICATED,
            "missing or wrong bearer token; send metadata 'authorization: Bearer <token>'",
        ),
    )


def _denying(handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    kwargs = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(_deny, **kwargs)
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(_deny, **kwargs)
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(_deny, **kwargs)
    return grpc.stream_stream_rpc_method_handler(_deny, **kwargs)
