"""The one place where errors become gRPC statuses with a ``google.rpc.ErrorInfo``.

Input refusals (``imagery.errors.AsmSpotterError``) keep their ``Reason``; service conditions
(overload, auth, not ready) get a ``ServiceReason``. Messages say what to do about it.
"""

from __future__ import annotations

from enum import StrEnum

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from imagery.errors import AsmSpotterError, Reason

DOMAIN = "asmspotter.org"


class ServiceReason(StrEnum):
    """Reasons the service itself gives (not about the input's content)."""

    OVERLOADED = "OVERLOADED"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    NOT_READY = "NOT_READY"
    DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"
    CANCELLED = "CANCELLED"
    STREAM_IDLE = "STREAM_IDLE"
    INTERNAL = "INTERNAL"


# Reason -> gRPC code. Anything about the caller's input is INVALID_ARGUMENT unless a more precise
# code exists (a missing file is NOT_FOUND, a forbidden path PERMISSION_DENIED, size limits
# RESOURCE_EXHAUSTED...).
_CODES: dict[str, grpc.StatusCode] = {
    Reason.FILE_NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    Reason.URI_NOT_ALLOWED: grpc.StatusCode.PERMISSION_DENIED,
    Reason.TILE_TOO_LARGE: grpc.StatusCode.INVALID_ARGUMENT,
    Reason.BUNDLE_INVALID: grpc.StatusCode.FAILED_PRECONDITION,
    Reason.UNREACHABLE: grpc.StatusCode.UNAVAILABLE,
    ServiceReason.OVERLOADED: grpc.StatusCode.RESOURCE_EXHAUSTED,
    ServiceReason.UNAUTHENTICATED: grpc.StatusCode.UNAUTHENTICATED,
    ServiceReason.NOT_READY: grpc.StatusCode.UNAVAILABLE,
    ServiceReason.DEADLINE_EXCEEDED: grpc.StatusCode.DEADLINE_EXCEEDED,
    ServiceReason.CANCELLED: grpc.StatusCode.CANCELLED,
    ServiceReason.STREAM_IDLE: grpc.StatusCode.DEADLINE_EXCEEDED,
    ServiceReason.INTERNAL: grpc.StatusCode.INTERNAL,
}


class ServiceError(Exception):
    """A refusal by the service itself (overload, auth, readiness)."""

    def __init__(self, reason: ServiceReason, message: str, **metadata: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.metadata = metadata


def code_for(reason: str) -> grpc.StatusCode:
    return _CODES.get(reason, grpc.StatusCode.INVALID_ARGUMENT)


def code_name(value: int) -> str:
    """Numeric status code -> its name, e.g. 3 -> 'INVALID_ARGUMENT'."""
    for code in grpc.StatusCode:
        if code.value[0] == value:
            return code.name
    return "UNKNOWN"


def build_status(
    code: grpc.StatusCode, reason: str, message: str, metadata: dict[str, str] | None = None
) -> status_pb2.Status:
    """A ``google.rpc.Status`` with one ``ErrorInfo`` detail."""
    info = error_details_pb2.ErrorInfo(reason=reason, domain=DOMAIN, metadata=metadata or {})
    detail = any_pb2.Any()
    detail.Pack(info)
    return status_pb2.Status(code=code.value[0], message=message, details=[detail])


def status_from_exception(exc: BaseException) -> status_pb2.Status:
    """Any exception -> ``google.rpc.Status``; unexpected ones become INTERNAL without internals."""
    if isinstance(exc, AsmSpotterError):
        meta = {"path": exc.path} if exc.path else {}
        return build_status(code_for(exc.reason), exc.reason.value, str(exc), meta)
    if isinstance(exc, ServiceError):
        return build_status(code_for(exc.reason), exc.reason.value, str(exc), exc.metadata)
    return build_status(
        grpc.StatusCode.INTERNAL,
        ServiceReason.INTERNAL.value,
        f"internal error ({type(exc).__name__}); the server logged the details",
    )


def abort(context: grpc.ServicerContext, exc: BaseException) -> None:
    """End the RPC with the status for ``exc`` (raises, as ``context.abort_with_status`` does)."""
    context.abort_with_status(rpc_status.to_status(status_from_exception(exc)))


def error_info(status: status_pb2.Status | None) -> error_details_pb2.ErrorInfo | None:
    """The ``ErrorInfo`` detail of a status, if any (client side too)."""
    for detail in status.details if status is not None else ():
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return info
    return None
