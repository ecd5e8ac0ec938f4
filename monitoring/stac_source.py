"""Where ``fetch`` finds Sentinel-2 items: a STAC API, or static STAC read with pystac.

One ``--stac SOURCE`` names any of them; the kind is recognised, never assumed:

- a STAC API (its landing page conforms to STAC API - Item Search): searched there with
  pystac-client (``collections``, ``intersects``, ``datetime``, the query extension for cloud);
- a static catalog or collection (``catalog.json``/``collection.json``, a local path or URL):
  every item below it is read with pystac and filtered here;
- an item collection (a GeoJSON FeatureCollection of items, e.g. a saved search result);
- one item file, a folder of item files, or a glob of them (``items/*.json``).

Static items are filtered here exactly as an API would: collection (when asked), footprint
intersecting the area, acquisition date within start..end (both days included), cloud cover.
Network failures are UNREACHABLE, a document that is not STAC is INVALID_ARGUMENT; both one line.
"""

from __future__ import annotations

import glob
import json
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any

from shapely.geometry import mapping, shape
from shapely.geometry.base import BaseGeometry

from imagery.errors import AsmSpotterError, Reason

ITEM_SEARCH = "https://api.stacspec.org/v1.0.0/item-search"
API_COLLECTION = "sentinel-2-l2a"  # searched on an API when no --collection is given
TIMEOUT_S = 30


def _when(text: str, name: str, end: bool) -> datetime:
    """'2024-03-01' (a whole day: its first or last instant) or an ISO timestamp, as UTC."""
    text = str(text)
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            clock = time(23, 59, 59, 999999) if end else time(0)
            return datetime.combine(day, clock, tzinfo=UTC)
        when = datetime.fromisoformat(text)
    except ValueError:
        raise AsmSpotterError(
            Reason.INVALID_ARGUMENT, f"{name} {text!r} is not a date that exists (YYYY-MM-DD)"
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def parse_dates(start: str, end: str) -> tuple[datetime, datetime]:
    """Dates (or timestamps) that exist, in order; INVALID_ARGUMENT otherwise (before any
    network). A date covers its whole day."""
    first, last = _when(start, "--start", False), _when(end, "--end", True)
    if last < first:
        raise AsmSpotterError(
            Reason.INVALID_ARGUMENT, f"--end {end} is before --start {start}; swap them"
        )
    return first, last


def is_url(source: str) -> bool:
    return source.startswith(("http://", "https://"))


def _get_json(url: str) -> dict[str, Any]:
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
            return json.loads(response.read())
    except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
        reason = getattr(exc, "reason", exc)
        raise AsmSpotterError(Reason.UNREACHABLE, f"cannot reach {url}: {reason}") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise AsmSpotterError(
            Reason.INVALID_ARGUMENT, f"{url} does not answer with JSON; is it a STAC URL?"
        ) from None


def _read_json(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise AsmSpotterError(
            Reason.INVALID_ARGUMENT, f"not a STAC JSON document ({exc})", str(path)
        ) from None
    if not isinstance(doc, dict):
        raise AsmSpotterError(Reason.INVALID_ARGUMENT, "not a STAC JSON document", str(path))
    return doc


def is_api(doc: dict[str, Any]) -> bool:
    conforms = doc.get("conformsTo") or []
    if any(str(c).startswith(ITEM_SEARCH) for c in conforms):
        return True
    return any(link.get("rel") == "search" for link in doc.get("links", []))


def describe(source: str) -> str:
    """'api', 'catalog', 'item-collection', 'item' or 'item-files' for a source (reads it)."""
    if is_url(source):
        doc = _get_json(source)
        return "api" if is_api(doc) else _kind(doc, source)
    path = Path(source)
    if any(ch in source for ch in "*?["):
        return "item-files"
    if not path.exists():
        raise AsmSpotterError(
            Reason.FILE_NOT_FOUND,
            "no such STAC file or folder (give a STAC API URL, a catalog.json or "
            "collection.json, an item collection, item files or a folder of them)",
            source,
        )
    if path.is_dir():
        top = [path / n for n in ("catalog.json", "collection.json") if (path / n).is_file()]
        return "catalog" if top else "item-files"
    return _kind(_read_json(path), source)


def _kind(doc: dict[str, Any], source: str) -> str:
    kind = doc.get("type")
    if kind in ("Catalog", "Collection"):
        return "catalog"
    if kind == "FeatureCollection":
        return "item-collection"
    if kind == "Feature" and "assets" in doc:
        return "item"
    raise AsmSpotterError(
        Reason.INVALID_ARGUMENT,
        f"a JSON document of type {kind!r}, not a STAC API, catalog, collection, item "
        "collection or item",
        source,
    )


def find_items(
    source: str,
    collection: str | None,
    area: BaseGeometry,
    start: str,
    end: str,
    max_cloud: float | None = None,
    modifier: Callable | None = None,
) -> list[Any]:
    """pystac Items over ``area`` (WGS84) between the dates, oldest first."""
    first, last = parse_dates(start, end)
    kind = describe(source)
    if kind == "api":
        collection = collection or API_COLLECTION
        items = _search_api(source, collection, area, start, end, max_cloud, modifier)
    else:
        items = [
            i for i in _static_items(source, kind) if _wanted(i, collection, area, first, last)
        ]
        for item in items:
            item.make_asset_hrefs_absolute()
    if max_cloud is not None:  # also here, for APIs without the query extension
        items = [i for i in items if i.properties.get("eo:cloud_cover", 0) <= max_cloud]
    return sorted(items, key=lambda i: (i.datetime or datetime.min.replace(tzinfo=UTC), i.id))


def _search_api(
    url: str,
    collection: str | None,
    area: BaseGeometry,
    start: str,
    end: str,
    max_cloud: float | None,
    modifier: Callable | None,
) -> list[Any]:
    from pystac_client import Client
    from pystac_client.exceptions import APIError

    try:
        client = Client.open(url, modifier=modifier)
        query = {"eo:cloud_cover": {"lte": max_cloud}} if max_cloud is not None else None
        return list(
            client.search(
                collections=[collection] if collection else None,
                intersects=mapping(area),
                datetime=f"{start}/{end}",
                query=query,
            ).items()
        )
    except OSError as exc:
        raise AsmSpotterError(
            Reason.UNREACHABLE, f"STAC search at {url} failed: {exc}".splitlines()[0]
        ) from exc
    except (APIError, ValueError, TypeError) as exc:  # also pystac-client's own error types
        raise AsmSpotterError(
            Reason.INVALID_ARGUMENT, f"STAC search at {url} failed: {exc}".splitlines()[0]
        ) from exc


def _static_items(source: str, kind: str) -> Iterable[Any]:
    import pystac

    try:
        if kind == "catalog":
            href = source
            if not is_url(source) and Path(source).is_dir():
                href = str(next(p for n in ("catalog.json", "collection.json")
                                if (p := Path(source) / n).is_file()))  # fmt: skip
            yield from pystac.read_file(href).get_items(recursive=True)
        elif kind == "item-collection":
            yield from pystac.ItemCollection.from_file(source)
        elif kind == "item":
            yield pystac.Item.from_file(source)
        else:
            files = (
                sorted(glob.glob(source))
                if not Path(source).is_dir()
                else sorted(str(p) for p in Path(source).rglob("*.json"))
            )
            for f in files:
                doc = _read_json(Path(f))
                if doc.get("type") == "Feature" and "assets" in doc:
                    yield pystac.Item.from_file(f)
    except AsmSpotterError:
        raise
    except (OSError, urllib.error.URLError) as exc:
        raise AsmSpotterError(
            Reason.UNREACHABLE, f"cannot read STAC {source}: {exc}".splitlines()[0]
        ) from None
    except Exception as exc:  # pystac's STACTypeError, STACValidationError, KeyError ...
        raise AsmSpotterError(
            Reason.INVALID_ARGUMENT, f"not readable as STAC ({type(exc).__name__}: {exc})", source
        ) from None


def _wanted(
    item: Any, collection: str | None, area: BaseGeometry, first: datetime, last: datetime
) -> bool:
    if collection and item.collection_id not in (None, collection):
        return False
    if item.geometry is None or not shape(item.geometry).intersects(area):
        return False
    when = item.datetime or item.common_metadata.start_datetime
    if when is None:
        return False
    when = when if when.tzinfo else when.replace(tzinfo=UTC)
    return first <= when <= last
