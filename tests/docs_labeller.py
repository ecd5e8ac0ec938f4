"""``python -m tests.docs_labeller [TITLE]``: the labellers of the documented labelling steps.

Between `label predict` and `label export` people correct the suggestions in Label Studio's
browser UI. The documented-commands test cannot, so this accepts each task's suggestions as its
annotation through the API (the suggestion with most regions; a task without any becomes a
negative chip), as a labeller pressing "submit" on every task would. Server URL and token come
from the same environment variables the CLI reads.
"""

from __future__ import annotations

import sys

from labeling.project import call, connect, require_project


def _regions(prediction: object) -> list:
    result = prediction.get("result") if isinstance(prediction, dict) else prediction.result
    return list(result or [])


def main(argv: list[str]) -> int:
    title = argv[0] if argv else "ASM pits and ponds"
    ls = connect()
    project_id = require_project(ls, title)
    tasks = call("list tasks", ls.tasks.list, project=project_id, resolve_uri=False)
    done = 0
    for task in tasks:
        if getattr(task, "annotations", None):
            continue
        best = max((_regions(p) for p in task.predictions or []), key=len, default=[])
        call("annotate", ls.annotations.create, task.id, result=best, was_cancelled=False)
        done += 1
    print(f"{done} task(s) annotated from their suggestions")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
