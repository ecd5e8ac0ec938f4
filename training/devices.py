"""The one device rule of training, evaluation, bundles and the server."""

from __future__ import annotations

from imagery.errors import AsmSpotterError, Reason


def resolve_device(name: str | None = "auto", local_rank: int | None = None) -> str:
    """'auto'/None -> 'cuda' when CUDA is present, else 'cpu'; 'cuda' -> 'cuda:<local_rank>' when
    a rank is given. A CUDA device that is absent is an INVALID_ARGUMENT, not a torch traceback."""
    import torch

    name = (name or "auto").strip().lower()
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and local_rank is not None:
        name = f"cuda:{local_rank}"
    if name == "cpu":
        return name
    if not name.startswith("cuda"):
        raise AsmSpotterError(
            Reason.INVALID_ARGUMENT, f"device {name!r} is not one of auto, cpu, cuda, cuda:N"
        )
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    index = name.partition(":")[2]
    if count == 0 or (index and (not index.isdigit() or int(index) >= count)):
        raise AsmSpotterError(
            Reason.INVALID_ARGUMENT,
            f"device {name!r} asked for but {count} CUDA device(s) are available; use cpu",
        )
    return name
