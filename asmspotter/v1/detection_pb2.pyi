from google.rpc import status_pb2 as _status_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SiteClass(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SITE_CLASS_UNSPECIFIED: _ClassVar[SiteClass]
    SITE_CLASS_PIT: _ClassVar[SiteClass]
    SITE_CLASS_POND: _ClassVar[SiteClass]
SITE_CLASS_UNSPECIFIED: SiteClass
SITE_CLASS_PIT: SiteClass
SITE_CLASS_POND: SiteClass

class Tile(_message.Message):
    __slots__ = ("content", "uri", "sensor", "band_names", "tile_id")
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    URI_FIELD_NUMBER: _ClassVar[int]
    SENSOR_FIELD_NUMBER: _ClassVar[int]
    BAND_NAMES_FIELD_NUMBER: _ClassVar[int]
    TILE_ID_FIELD_NUMBER: _ClassVar[int]
    content: bytes
    uri: str
    sensor: str
    band_names: _containers.RepeatedScalarFieldContainer[str]
    tile_id: str
    def __init__(self, content: _Optional[bytes] = ..., uri: _Optional[str] = ..., sensor: _Optional[str] = ..., band_names: _Optional[_Iterable[str]] = ..., tile_id: _Optional[str] = ...) -> None: ...

class DetectionOptions(_message.Message):
    __slots__ = ("min_score", "output_crs", "max_detections")
    MIN_SCORE_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_CRS_FIELD_NUMBER: _ClassVar[int]
    MAX_DETECTIONS_FIELD_NUMBER: _ClassVar[int]
    min_score: float
    output_crs: str
    max_detections: int
    def __init__(self, min_score: _Optional[float] = ..., output_crs: _Optional[str] = ..., max_detections: _Optional[int] = ...) -> None: ...

class BoundingBox(_message.Message):
    __slots__ = ("min_x", "min_y", "max_x", "max_y")
    MIN_X_FIELD_NUMBER: _ClassVar[int]
    MIN_Y_FIELD_NUMBER: _ClassVar[int]
    MAX_X_FIELD_NUMBER: _ClassVar[int]
    MAX_Y_FIELD_NUMBER: _ClassVar[int]
    min_x: float
    min_y: float
    max_x: float
    max_y: float
    def __init__(self, min_x: _Optional[float] = ..., min_y: _Optional[float] = ..., max_x: _Optional[float] = ..., max_y: _Optional[float] = ...) -> None: ...

class Site(_message.Message):
    __slots__ = ("site_id", "site_class", "score", "geometry_geojson", "bbox", "area_m2", "tile_id")
    SITE_ID_FIELD_NUMBER: _ClassVar[int]
    SITE_CLASS_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    GEOMETRY_GEOJSON_FIELD_NUMBER: _ClassVar[int]
    BBOX_FIELD_NUMBER: _ClassVar[int]
    AREA_M2_FIELD_NUMBER: _ClassVar[int]
    TILE_ID_FIELD_NUMBER: _ClassVar[int]
    site_id: str
    site_class: SiteClass
    score: float
    geometry_geojson: str
    bbox: BoundingBox
    area_m2: float
    tile_id: str
    def __init__(self, site_id: _Optional[str] = ..., site_class: _Optional[_Union[SiteClass, str]] = ..., score: _Optional[float] = ..., geometry_geojson: _Optional[str] = ..., bbox: _Optional[_Union[BoundingBox, _Mapping]] = ..., area_m2: _Optional[float] = ..., tile_id: _Optional[str] = ...) -> None: ...

class ModelVersion(_message.Message):
    __slots__ = ("name", "version", "weights_sha256")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    WEIGHTS_SHA256_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: str
    weights_sha256: str
    def __init__(self, name: _Optional[str] = ..., version: _Optional[str] = ..., weights_sha256: _Optional[str] = ...) -> None: ...

class GridCheck(_message.Message):
    __slots__ = ("tile_gsd_m", "model_gsd_m", "resampled", "crs", "notice")
    TILE_GSD_M_FIELD_NUMBER: _ClassVar[int]
    MODEL_GSD_M_FIELD_NUMBER: _ClassVar[int]
    RESAMPLED_FIELD_NUMBER: _ClassVar[int]
    CRS_FIELD_NUMBER: _ClassVar[int]
    NOTICE_FIELD_NUMBER: _ClassVar[int]
    tile_gsd_m: float
    model_gsd_m: float
    resampled: bool
    crs: str
    notice: str
    def __init__(self, tile_gsd_m: _Optional[float] = ..., model_gsd_m: _Optional[float] = ..., resampled: _Optional[bool] = ..., crs: _Optional[str] = ..., notice: _Optional[str] = ...) -> None: ...

class TileDetections(_message.Message):
    __slots__ = ("tile_id", "sites", "crs", "width", "height", "window_count", "grid_check")
    TILE_ID_FIELD_NUMBER: _ClassVar[int]
    SITES_FIELD_NUMBER: _ClassVar[int]
    CRS_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    WINDOW_COUNT_FIELD_NUMBER: _ClassVar[int]
    GRID_CHECK_FIELD_NUMBER: _ClassVar[int]
    tile_id: str
    sites: _containers.RepeatedCompositeFieldContainer[Site]
    crs: str
    width: int
    height: int
    window_count: int
    grid_check: GridCheck
    def __init__(self, tile_id: _Optional[str] = ..., sites: _Optional[_Iterable[_Union[Site, _Mapping]]] = ..., crs: _Optional[str] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., window_count: _Optional[int] = ..., grid_check: _Optional[_Union[GridCheck, _Mapping]] = ...) -> None: ...

class DetectTileRequest(_message.Message):
    __slots__ = ("tile", "options")
    TILE_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    tile: Tile
    options: DetectionOptions
    def __init__(self, tile: _Optional[_Union[Tile, _Mapping]] = ..., options: _Optional[_Union[DetectionOptions, _Mapping]] = ...) -> None: ...

class DetectTileResponse(_message.Message):
    __slots__ = ("detections", "model")
    DETECTIONS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    detections: TileDetections
    model: ModelVersion
    def __init__(self, detections: _Optional[_Union[TileDetections, _Mapping]] = ..., model: _Optional[_Union[ModelVersion, _Mapping]] = ...) -> None: ...

class BatchDetectTilesRequest(_message.Message):
    __slots__ = ("requests",)
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    requests: _containers.RepeatedCompositeFieldContainer[DetectTileRequest]
    def __init__(self, requests: _Optional[_Iterable[_Union[DetectTileRequest, _Mapping]]] = ...) -> None: ...

class BatchDetectTilesResult(_message.Message):
    __slots__ = ("detections", "error")
    DETECTIONS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    detections: TileDetections
    error: _status_pb2.Status
    def __init__(self, detections: _Optional[_Union[TileDetections, _Mapping]] = ..., error: _Optional[_Union[_status_pb2.Status, _Mapping]] = ...) -> None: ...

class BatchDetectTilesResponse(_message.Message):
    __slots__ = ("results", "model")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[BatchDetectTilesResult]
    model: ModelVersion
    def __init__(self, results: _Optional[_Iterable[_Union[BatchDetectTilesResult, _Mapping]]] = ..., model: _Optional[_Union[ModelVersion, _Mapping]] = ...) -> None: ...

class SceneHeader(_message.Message):
    __slots__ = ("tile", "options", "total_bytes")
    TILE_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    tile: Tile
    options: DetectionOptions
    total_bytes: int
    def __init__(self, tile: _Optional[_Union[Tile, _Mapping]] = ..., options: _Optional[_Union[DetectionOptions, _Mapping]] = ..., total_bytes: _Optional[int] = ...) -> None: ...

class DetectSceneRequest(_message.Message):
    __slots__ = ("header", "chunk")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    header: SceneHeader
    chunk: bytes
    def __init__(self, header: _Optional[_Union[SceneHeader, _Mapping]] = ..., chunk: _Optional[bytes] = ...) -> None: ...

class DetectSceneResponse(_message.Message):
    __slots__ = ("sites", "windows_done", "windows_total", "done", "model", "grid_check")
    SITES_FIELD_NUMBER: _ClassVar[int]
    WINDOWS_DONE_FIELD_NUMBER: _ClassVar[int]
    WINDOWS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    GRID_CHECK_FIELD_NUMBER: _ClassVar[int]
    sites: _containers.RepeatedCompositeFieldContainer[Site]
    windows_done: int
    windows_total: int
    done: bool
    model: ModelVersion
    grid_check: GridCheck
    def __init__(self, sites: _Optional[_Iterable[_Union[Site, _Mapping]]] = ..., windows_done: _Optional[int] = ..., windows_total: _Optional[int] = ..., done: _Optional[bool] = ..., model: _Optional[_Union[ModelVersion, _Mapping]] = ..., grid_check: _Optional[_Union[GridCheck, _Mapping]] = ...) -> None: ...

class GetModelRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Model(_message.Message):
    __slots__ = ("name", "version", "engine", "sensor", "band_names", "chip_size", "classes", "metrics", "weights_sha256", "create_time", "device")
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ENGINE_FIELD_NUMBER: _ClassVar[int]
    SENSOR_FIELD_NUMBER: _ClassVar[int]
    BAND_NAMES_FIELD_NUMBER: _ClassVar[int]
    CHIP_SIZE_FIELD_NUMBER: _ClassVar[int]
    CLASSES_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    WEIGHTS_SHA256_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: str
    engine: str
    sensor: str
    band_names: _containers.RepeatedScalarFieldContainer[str]
    chip_size: int
    classes: _containers.RepeatedScalarFieldContainer[str]
    metrics: _containers.ScalarMap[str, float]
    weights_sha256: str
    create_time: str
    device: str
    def __init__(self, name: _Optional[str] = ..., version: _Optional[str] = ..., engine: _Optional[str] = ..., sensor: _Optional[str] = ..., band_names: _Optional[_Iterable[str]] = ..., chip_size: _Optional[int] = ..., classes: _Optional[_Iterable[str]] = ..., metrics: _Optional[_Mapping[str, float]] = ..., weights_sha256: _Optional[str] = ..., create_time: _Optional[str] = ..., device: _Optional[str] = ...) -> None: ...

class GetModelResponse(_message.Message):
    __slots__ = ("model",)
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: Model
    def __init__(self, model: _Optional[_Union[Model, _Mapping]] = ...) -> None: ...
