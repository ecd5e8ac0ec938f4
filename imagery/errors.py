"""Typed errors for bad imagery input.

Every error carries a machine-readable ``reason`` (the same strings the gRPC API sends as
``google.rpc.ErrorInfo.reason``) and a message a person can act on, naming the file.
"""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    """Why an input was refused. Shared by the CLI, the service and the labelling export."""

    NOT_A_GEOTIFF = "NOT_A_GEOTIFF"
    FILE_NOT_FOUND = "FILE_NOT_FOUND"
    CRS_MISSING = "CRS_MISSING"
    CRS_MISMATCH = "CRS_MISMATCH"  # coordinates outside the valid range of the declared CRS
    BAND_MISMATCH = "BAND_MISMATCH"
    BAND_MISSING = "BAND_MISSING"
    BAND_ORDER_UNKNOWN = "BAND_ORDER_UNKNOWN"  # no band descriptions, or ones that name no band
    GSD_MISMATCH = "GSD_MISMATCH"  # pixels too coarse for the model's ground sampling distance
    WRONG_DTYPE = "WRONG_DTYPE"
    ALL_NODATA = "ALL_NODATA"
    NAN_VALUES = "NAN_VALUES"
    TILE_TOO_LARGE = "TILE_TOO_LARGE"
    GEOTRANSFORM_INVALID = "GEOTRANSFORM_INVALID"
    UNITS_UNKNOWN = "UNITS_UNKNOWN"
    UNKNOWN_SENSOR = "UNKNOWN_SENSOR"
    URI_NOT_ALLOWED = "URI_NOT_ALLOWED"
    INVALID_ANNOTATION = "INVALID_ANNOTATION"
    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    UNREACHABLE = "UNREACHABLE"  # a server or URL the command needs did not answer
    BUNDLE_INVALID = "BUNDLE_INVALID"
    TRAINING_DIVERGED = "TRAINING_DIVERGED"


class AsmSpotterError(Exception):
    """Base class of every refusal of user input: ``reason`` plus a one-line message."""

    def __init__(self, reason: Reason | str, message: str, path: str | None = None) -> None:
        self.reason = Reason(reason)
        self.path = path
        self.detail = message
        super().__init__(f"{path}: {message}" if path else message)


class ImageryError(AsmSpotterError):
    """A raster that cannot be used: wrong format, bands, dtype, CRS or values."""
