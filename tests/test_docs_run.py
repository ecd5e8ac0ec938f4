"""Every command in the docs runs as written, from a clean copy of the repository after `make demo`.

The copy holds exactly the files a clone would (tracked files only), with ``../shared`` beside it
and the already built ``.venv``/``.venv-labelstudio`` linked in (their Makefile prerequisites are
dated before the install markers, so `make demo` does not reinstall). Each document's blocks run
in order in one bash process (``tests/docs_support.py`` says how, and how a doc author marks a
block to skip or shorten); a failing command fails the test with its document, line and stderr.
HOME is a fresh folder and PATH holds only the system folders: a doc that calls ``asmspotter``
instead of ``.venv/bin/asmspotter`` fails.

At the end, passed or failed, a table lists every command with its wall time and status (run,
changed, skipped...): printed (``pytest -s``), and written as JSON to ``times.json`` in the test's
folder and to ``$ASMSPOTTER_DOCS_TIMES`` when set.
"""

from __future__ import annotations

import os

import pytest

from tests.docs_support import (
    PORTS,
    REPO,
    clean_copy,
    documents,
    failure,
    free_port,
    report_times,
    run_document,
)
from tests.real_parts import missing


@pytest.mark.timeout(2400)
def test_documented_commands_run_as_written(tmp_path_factory):
    if not (REPO / ".venv" / "bin" / "asmspotter").exists():
        missing("the project's .venv is not built (make install)")
    root = tmp_path_factory.mktemp("docs")
    clone = clean_copy(root)
    ports = {p: free_port() for p in PORTS}
    summary: list[dict] = []
    try:
        for doc in documents(clone):
            logs = root / "logs" / doc.relative_to(clone).as_posix().replace("/", "_")
            logs.mkdir(parents=True)
            records = run_document(doc, clone, logs, ports)
            summary += records
            problem = failure(records, logs)
            if problem:
                pytest.fail(problem)
        ran = [r for r in summary if r["status"] in ("run", "changed")]
        assert len(ran) >= 20, summary  # the docs hold commands and they ran
    finally:  # the wall times, for the closing note, whether the run passed or not
        report_times(summary, root / "times.json", os.environ.get("ASMSPOTTER_DOCS_TIMES"))
