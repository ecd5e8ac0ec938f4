"""Connect to Label Studio and set up a labelling project idempotently (by title)."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from imagery.errors import AsmSpotterError, Reason
from labeling.config import INSTRUCTIONS, label_config

URL_ENV, TOKEN_ENV = "LABEL_STUDIO_URL", "LABEL_STUDIO_API_KEY"
DOCROOT_ENV = "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT"
DEFAULT_TITLE = "ASM pits and ponds"


def connect(url: str | None = None, token: str | None = None) -> Any:
    """A ``label_studio_sdk.LabelStudio`` client; URL and token default to the environment."""
    from label_studio_sdk import LabelStudio

    url = url or os.environ.get(URL_ENV)
    token = token or os.environ.get(TOKEN_ENV)
    if not url or not token:
        raise AsmSpotterError(
            Reason.INVALID_ARGUMENT,
            f"Label Studio URL and API token needed: pass --url/--token or set {URL_ENV} and "
            f"{TOKEN_ENV}",
        )
    return LabelStudio(base_url=url.rstrip("/"), api_key=token)


def call(what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Run one SDK call; a refused or failed request becomes one typed line, not a traceback."""
    from label_studio_sdk.core.api_error import ApiError

    try:
        return fn(*args, **kwargs)
    except ApiError as exc:
        raise AsmSpotterError(
            Reason.INVALID_ARGUMENT, f"Label Studio refused to {what}: {exc.status_code} {exc.body}"
        ) from exc
    except OSError as exc:
        raise AsmSpotterError(
            Reason.INVALID_ARGUMENT, f"cannot reach Label Studio to {what} ({exc})"
        ) from exc
    except Exception as exc:  # httpx transport errors are not OSError subclasses
        if type(exc).__module__.startswith("httpx"):
            raise AsmSpotterError(
                Reason.INVALID_ARGUMENT, f"cannot reach Label Studio to {what} ({exc})"
            ) from exc
        raise


def slug(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-") or "project"


def find_project(ls: Any, title: str) -> int | None:
    for project in call("list projects", ls.projects.list):
        if project.title == title:
            return int(project.id)
    return None


def require_project(ls: Any, title: str) -> int:
    project_id = find_project(ls, title)
    if project_id is None:
        raise AsmSpotterError(
            Reason.INVALID_ARGUMENT,
            f"no Label Studio project titled {title!r}; create it with `asmspotter label init`",
        )
    return project_id


def ensure_project(
    ls: Any,
    title: str = DEFAULT_TITLE,
    true_color: str = "B04 B03 B02",
    false_color: str = "B12 B08 B04",
    *,
    config: str | None = None,
    instructions: str = INSTRUCTIONS,
    description: str = "Pits and ponds of artisanal and small-scale gold mining (AIASMSpotter)",
) -> tuple[int, bool]:
    """Create the project or bring an existing one (same title) up to date: (id, created).
    ``config``: another labelling interface (e.g. ``labeling.config.review_config()``)."""
    settings = {
        "title": title,
        "description": description,
        "label_config": config or label_config(true_color, false_color),
        "expert_instruction": instructions,
        "show_instruction": True,
        "show_skip_button": True,
        "enable_empty_annotation": True,
        "show_collab_predictions": True,
    }
    project_id = find_project(ls, title)
    if project_id is None:
        project = call("create the project", ls.projects.create, **settings)
        return int(project.id), True
    call("update the project", ls.projects.update, project_id, **settings)
    return project_id, False


def ensure_local_storage(ls: Any, project_id: int, folder: Path) -> int:
    """A local-files storage on ``folder`` so Label Studio serves its PNGs (never synced:
    tasks are imported with their metadata instead)."""
    folder = Path(folder).resolve()
    for storage in call("list storages", ls.import_storage.local.list, project=project_id):
        if storage.path and Path(storage.path).resolve() == folder:
            return int(storage.id)
    storage = call(
        "add a local-files storage",
        ls.import_storage.local.create,
        project=project_id,
        path=str(folder),
        title=f"chips {folder.name}",
        regex_filter=r".*\.png$",
        use_blob_urls=True,
    )
    return int(storage.id)


def document_root(root: str | Path | None) -> Path:
    """Label Studio's local-files document root (``--files-root`` or its environment variable)."""
    root = root or os.environ.get(DOCROOT_ENV)
    if not root:
        raise AsmSpotterError(
            Reason.INVALID_ARGUMENT,
            f"where Label Studio serves local files from is unknown: pass --files-root or set "
            f"{DOCROOT_ENV}",
        )
    return Path(root).resolve()
