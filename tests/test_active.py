"""Active learning: the uncertainty rule, and `asmspotter label next` on a real Label Studio."""

from __future__ import annotations

import json

import numpy as np
import pytest

from asmspotter.cli import main
from labeling.active import ChipScorer, dihedral, pick, uncertainty, view_scores


def test_uncertainty_rule():
    at_threshold = np.full((8, 1), 0.5)
    sure = np.full((8, 1), 0.99)
    torn = np.array([[0.0], [1.0]] * 4)  # the views disagree completely
    u = uncertainty(np.hstack([at_threshold, sure, torn]))
    np.testing.assert_allclose(u, [0.5, 0.5 * 0.02, 1.0], atol=1e-9)
    # Another threshold moves the point of doubt.
    np.testing.assert_allclose(uncertainty(np.full((8, 1), 0.2), threshold=0.2), [0.5])
    order = pick(np.array([0.1, 0.9, 0.5, 0.9]), 3, exclude=np.array([0, 0, 0, 1], bool))
    assert order.tolist() == [1, 2, 0]


def test_views_are_the_eight_symmetries():
    img = np.arange(2 * 3 * 3, dtype=float).reshape(1, 2, 3, 3)
    views = [dihedral(img, k) for k in range(8)]
    assert np.array_equal(views[0], img)
    assert len({v.tobytes() for v in views}) == 8
    probe = view_scores(lambda x: x[:, 0, 0, 0], img)  # the top-left pixel of band 0
    assert sorted(probe[:, 0].tolist()) == [0.0, 0.0, 2.0, 2.0, 6.0, 6.0, 8.0, 8.0]


@pytest.mark.labelstudio
def test_label_next_ranks_unlabelled_tasks(labelstudio, tiny_bundle, tmp_path, capsys):
    from imagery.scene import open_scene
    from imagery.synthetic.output import write_scene
    from labeling import project as lsproject
    from labeling.predict import chip_file
    from labeling.tasks import import_scene

    files = write_scene(tmp_path / "scene", 5, 128, 128, cloud_probability=0.0)
    ls = lsproject.connect(labelstudio.url, labelstudio.token)
    project_id, _ = lsproject.ensure_project(ls, "ASM active learning")
    folder = labelstudio.document_root / "asm-active"
    import_scene(ls, project_id, files.tile, labelstudio.document_root, folder, 64)
    tasks = list(ls.tasks.list(project=project_id, resolve_uri=False))
    assert len(tasks) == 4
    for done in tasks[:1]:  # labelled already: never picked
        ls.annotations.create(done.id, result=[], was_cancelled=False)
    out = tmp_path / "picks.json"
    args = ["label", "next", "--title", "ASM active learning", "--url", labelstudio.url,
            "--token", labelstudio.token, "--files-root", str(labelstudio.document_root),
            "--bundle", str(tiny_bundle), "--budget", "2", "--mark", "--out", str(out),
            "--device", "cpu"]  # fmt: skip
    assert main(args) == 0, capsys.readouterr().err
    assert "2 of 3 unlabelled tasks picked" in capsys.readouterr().out
    picks = json.loads(out.read_text())["picks"]
    assert {p["task_id"] for p in picks}.isdisjoint({tasks[0].id})
    # The same rule computed here from the bundle's score of every view of each unlabelled chip
    with ChipScorer(str(tiny_bundle), "cpu") as score:
        want = {}
        for task in tasks[1:]:
            with open_scene(chip_file(task.data, labelstudio.document_root)) as scene:
                chip = scene.read()[None]
            views = np.array([score(dihedral(chip, k))[0] for k in range(8)])
            # closeness to the bundle's own threshold (the tiny bundle has none: 0.5)
            want[task.id] = float(uncertainty(views[:, None], score.threshold)[0])
        assert score.threshold == 0.5
    best = sorted(want, key=lambda t: (-want[t], t))[:2]
    assert [p["task_id"] for p in picks] == best
    np.testing.assert_allclose([p["uncertainty"] for p in picks], [want[t] for t in best])
    marked = {t.id: t.data.get("label_next") for t in ls.tasks.list(project=project_id)}
    assert [marked[t] for t in best] == [1, 2]
    assert all(marked[t.id] is None for t in tasks if t.id not in best)


def test_a_chip_scores_as_the_service_scores_its_sites():
    """`label next` ranks chips by the score users see: with the default bundle its fused
    P(mine) (detector and verifier) of the chip's best site, as the real-chip benchmark scores
    the same chips through the service's Predictor."""
    from imagery.gallery import load_gallery
    from service.predictor import Predictor
    from training.chip_benchmark import predict_chips
    from training.model import load_bundle

    val = load_gallery().split("val")
    rows = np.r_[np.flatnonzero(val.labels == 1)[:6], np.flatnonzero(val.labels == 0)[:6]]
    chips = val.subset(rows)
    model = load_bundle("service/default_bundle", "cpu")
    with ChipScorer("service/default_bundle", "cpu") as score:
        assert score.bands == list(model.info["bands"])
        assert score.threshold == model.info["default_threshold"]
        ours = score(chips.images)
    predictor = Predictor(model)
    try:
        benchmark = predict_chips(predictor, chips).scores
    finally:
        predictor.close()
    np.testing.assert_allclose(ours, benchmark, atol=1e-5)
    # not the detector's own score: the verifier moved every chip that has a site
    raw = [max([0.0, *p.scores.tolist()]) for p in model.predict(chips.images, 0.01)]
    assert np.all(np.abs(ours - np.array(raw))[ours > 0] > 1e-3)
