"""The docs runner's own parts (tests/docs_support.py), on small documents: the wall times of a
failing document are kept, printed and written, and the clean copy holds tracked files only."""

from __future__ import annotations

import json
import re
import shlex
import subprocess

from tests.docs_support import (
    REPO,
    blocks,
    clean_copy,
    documents,
    failure,
    report_times,
    run_document,
    times_table,
)

DOC = """# A document

<!-- docs-test: skip: needs a Docker engine -->
```bash
docker build .
```

<!-- docs-test: omit "make test" runs the suite itself -->
<!-- docs-test: append "sleep" 0.2 -->
```bash
echo first > first.txt
make test
sleep
false
echo never > never.txt
```
"""


def test_a_failing_document_keeps_its_records_and_times(tmp_path, capsys):
    clone, logs = tmp_path / "clone", tmp_path / "logs"
    clone.mkdir()
    logs.mkdir()
    (clone / "doc.md").write_text(DOC)
    records = run_document(clone / "doc.md", clone, logs, {})
    got = [(r["command"], r["status"]) for r in records]
    assert got == [
        ("docker build .", "skipped"),
        ("make test", "skipped"),
        ("echo first > first.txt", "run"),
        ("sleep 0.2", "changed"),
        ("false", "failed (1)"),
        ("echo never > never.txt", "not run"),
    ]
    assert (clone / "first.txt").exists() and not (clone / "never.txt").exists()
    assert records[3]["seconds"] >= 0.2 and records[5].get("seconds") is None
    assert failure(records, logs).startswith("doc.md:10 exit 1: false")

    times = tmp_path / "times.json"
    report_times(records, times, None)
    assert json.loads(times.read_text()) == records
    out = capsys.readouterr().out
    table = out.split("wall times:\n")[1].splitlines()
    assert table[0].split() == ["document", "seconds", "status", "command"]
    assert re.fullmatch(r"doc\.md:10 +0\.[2-9] +changed +sleep 0\.2", table[4])
    assert re.fullmatch(r"doc\.md:4 +- +skipped +docker build \.", table[1])
    assert table[-1].startswith("6 commands (2 skipped, 1 run, 1 changed, 1 failed (1), 1 not run)")


def test_a_passing_document_has_no_failure(tmp_path):
    clone, logs = tmp_path / "clone", tmp_path / "logs"
    clone.mkdir()
    logs.mkdir()
    (clone / "doc.md").write_text("```bash\ntrue\necho $HOME\n```\n")
    records = run_document(clone / "doc.md", clone, logs, {})
    assert [r["status"] for r in records] == ["run", "run"]
    assert failure(records, logs) is None
    assert (logs / "1.out").read_text().strip() == str(logs / "home")  # a fresh HOME
    assert times_table(records).endswith("s in commands")


def _git(repo, *args):
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)


def test_clean_copy_holds_tracked_files_only(tmp_path):
    repo = tmp_path / "src" / "repo"
    (repo / "docs").mkdir(parents=True)
    _git(repo, "init", "-q")
    (repo / "docs" / "a.md").write_text("tracked\n")
    (repo / ".gitignore").write_text("out/\n")
    _git(repo, "add", ".")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "c")
    (repo / "docs" / "a.md").write_text("tracked, edited\n")  # the working tree's content
    (repo / "wip.py").write_text("untracked work in progress\n")
    (repo / "out").mkdir()
    (repo / "out" / "made.txt").write_text("ignored\n")
    clone = clean_copy(tmp_path / "dest", repo)
    files = sorted(p.relative_to(clone).as_posix() for p in clone.rglob("*") if p.is_file())
    assert files == [".gitignore", "docs/a.md"]
    assert (clone / "docs" / "a.md").read_text() == "tracked, edited\n"


def test_the_clean_copy_carries_what_the_documents_use():
    """Every repository file a runnable documented command names (and the hidden `before`
    helpers) is tracked, so the clean copy has it."""
    tracked = set(
        subprocess.run(
            ["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.splitlines()
    )
    named = {"Makefile", "tests/docs_labeller.py", "service/default_bundle/model.pt"}
    for doc in documents():
        for block in blocks(doc):
            if block.skip:
                continue
            for cmd in block.commands + block.before:
                for word in shlex.split(cmd.splitlines()[0], comments=True):
                    for part in word.split("="):
                        path = (REPO / part).resolve()
                        if part and path.is_relative_to(REPO) and path.is_file():
                            named.add(path.relative_to(REPO).as_posix())
                if "-m tests." in cmd:
                    module = cmd.split("-m ")[1].split()[0]
                    named.add(module.replace(".", "/") + ".py")
    named = {n for n in named if not n.startswith((".venv", "out/", "data/", "runs/"))}
    assert len(named) > 5
    assert sorted(named - tracked) == []


def test_training_readme_commands_are_correct():
    """training/README.md is not run by the docs test (its trainings take hours), so its command
    lines are checked here: real paths that documented steps produce, every required option,
    nothing written over the packaged bundle, and each line accepted by the CLI's own parser."""
    from asmspotter.cli import build_parser

    doc = REPO / "training" / "README.md"
    commands = [c for b in blocks(doc) for c in b.commands]
    assert len(commands) >= 5
    parser = build_parser()
    produced = ("data/syn", "data/heldout/annotations.json", "runs/")  # README.md makes data/
    for cmd in commands:
        words = shlex.split(cmd, comments=True)
        assert words[0] == ".venv/bin/asmspotter", cmd
        assert not [w for w in words if re.fullmatch(r"[A-Z_]{3,}(\.json)?", w)], cmd
        assert not [w for w in words if "default_bundle" in w], cmd  # never overwrite it
        args = parser.parse_args(words[1:])  # exits on an unknown or missing option
        if args.command == "train":
            assert str(args.data).startswith(produced[:2]), cmd
        for value in (getattr(args, "export", None), getattr(args, "out", None)):
            assert value is None or str(value).startswith("runs/"), cmd
        for value in (getattr(args, "checkpoint", None), getattr(args, "bundle", None)):
            assert value is None or str(value).startswith("runs/"), cmd
        for value in [getattr(args, "coco", None), *(getattr(args, "eval", None) or [])]:
            assert value is None or str(value) in produced, cmd
    text = doc.read_text()
    assert "CUDA + AMP" not in text
    assert "benchmarks/train_default_bundle.py" in text and "batch 4" in text
