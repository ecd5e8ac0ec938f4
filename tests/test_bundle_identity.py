"""A bundle's identity (name, version, weights hash) never collides with the packaged default's
and is never missing: before, an exported 4-iteration model was `asm-maskrcnn 1.0.0`, exactly
the packaged default's name and version."""

from __future__ import annotations

import json
import shutil

import pytest

from imagery.errors import AsmSpotterError, Reason
from training import bundle as bundle_mod
from training.bundle import export_bundle, load_bundle


@pytest.fixture
def checkpoint(tiny_bundle):
    return tiny_bundle.parent / "run" / "best.pt"


def test_explicit_default_name_and_version_is_refused(checkpoint, tmp_path):
    packaged = json.loads((bundle_mod.PACKAGED_BUNDLE / "bundle.json").read_text())
    with pytest.raises(AsmSpotterError) as err:
        export_bundle(
            checkpoint, tmp_path / "b", name=packaged["name"], version=packaged["version"]
        )
    assert err.value.reason is Reason.BUNDLE_INVALID and "packaged default" in str(err.value)


def test_config_default_version_gets_the_weights_hash(checkpoint, tmp_path, monkeypatch, capsys):
    info = json.loads((checkpoint.parent.parent / "bundle" / "bundle.json").read_text())
    fake = tmp_path / "packaged"
    fake.mkdir()
    clash = {"name": info["name"], "version": info["version"], "weights_sha256": "0" * 64}
    (fake / "bundle.json").write_text(json.dumps(clash))
    monkeypatch.setattr(bundle_mod, "PACKAGED_BUNDLE", fake)
    out = export_bundle(checkpoint, tmp_path / "b")
    exported = json.loads((out / "bundle.json").read_text())
    sha = exported["weights_sha256"]
    assert exported["version"] == f"{info['version']}+w{sha[:8]}"
    assert f"this bundle is {info['name']} {exported['version']}" in capsys.readouterr().err
    assert f"# {info['name']} {exported['version']}" in (out / "model_card.md").read_text()
    # exporting the packaged bundle's own folder replaces it and keeps the version
    monkeypatch.setattr(bundle_mod, "PACKAGED_BUNDLE", tmp_path / "c")
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "bundle.json").write_text(json.dumps(clash))
    again = json.loads((export_bundle(checkpoint, tmp_path / "c") / "bundle.json").read_text())
    assert again["version"] == info["version"]


def test_identity_is_never_missing(tiny_bundle, tmp_path):
    copy = shutil.copytree(tiny_bundle, tmp_path / "copy")
    info = json.loads((copy / "bundle.json").read_text())
    sha = info.pop("weights_sha256")
    (copy / "bundle.json").write_text(json.dumps(info))
    assert load_bundle(copy, "cpu").info["weights_sha256"] == sha  # computed, not empty
    info.pop("version")
    (copy / "bundle.json").write_text(json.dumps(info))
    with pytest.raises(AsmSpotterError) as err:
        load_bundle(copy, "cpu")
    assert err.value.reason is Reason.BUNDLE_INVALID and "version" in str(err.value)


def test_a_detections_file_with_no_site_still_names_its_model(tmp_path):
    """detect/demo write the model's identity on the collection: monitor run can record a run
    that found nothing (it refused such a file before: no feature named a model)."""
    from imagery.geometry import feature_collection
    from monitoring.detect import from_file

    identity = {"model_name": "asm", "model_version": "9.9.9", "weights_sha256": "ab" * 32}
    path = tmp_path / "sites.geojson"
    path.write_text(json.dumps(feature_collection([], model=identity)))
    features, meta = from_file(path)
    assert not features.properties
    assert (meta["model_version"], meta["weights_sha256"]) == ("asm-9.9.9", "ab" * 32)
    path.write_text(json.dumps(feature_collection([])))
    with pytest.raises(AsmSpotterError, match="which model"):
        from_file(path)
