"""The store of release artifacts: kept per release and recipe, taken only when made by the same recipe code, and a
stored manifest that does not validate is an error naming it."""

from __future__ import annotations

import json

import pytest

from compat.host.artifact_store import ArtifactStore
from compat.shared.errors import CompatError


def _artifact(folder, **fields):
    folder.mkdir(parents=True)
    manifest = {"status": "ok", "kind": "state_dict", "library": "x-transformers", "version": "2.25.5",
                "recipe": "decoder", **fields}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    (folder / "model.safetensors").write_bytes(b"weights")
    return folder


def test_a_saved_artifact_is_found_by_the_same_code_only(tmp_path):
    store = ArtifactStore(tmp_path / "store")
    assert store.lookup("x-transformers", "2.25.5", "decoder", "code1") is None  # nothing stored
    store.save("x-transformers", "2.25.5", "decoder", "code1", _artifact(tmp_path / "made"))
    found = store.lookup("x-transformers", "2.25.5", "decoder", "code1")
    assert found.folder == tmp_path / "store" / "x-transformers" / "2.25.5" / "decoder"
    assert (found.folder / "model.safetensors").read_bytes() == b"weights"
    assert found.identity.startswith("stored-")
    assert store.lookup("x-transformers", "2.25.5", "decoder", "code2") is None  # other recipe code: made again
    # saving again replaces what was there (and changes the identity results are keyed by)
    store.save("x-transformers", "2.25.5", "decoder", "code2", _artifact(tmp_path / "remade", config={"dim": 8}))
    again = store.lookup("x-transformers", "2.25.5", "decoder", "code2")
    assert again.identity != found.identity
    assert not list((tmp_path / "store" / "x-transformers" / "2.25.5").glob(".*"))  # no staging left behind


@pytest.mark.parametrize("damage, message", [
    (lambda m: m.write_text("{not json"), r"manifest\.json: the stored manifest is not valid JSON"),
    (lambda m: m.write_text("[1, 2]"), r"manifest\.json: expected a JSON object, got list"),
    (lambda m: m.write_text(json.dumps({"status": "fine", "library": "x-transformers", "version": "2.25.5",
                                        "recipe": "decoder"})), r"status: expected one of ok, .*got 'fine'"),
    (lambda m: m.write_text(m.read_text().replace('"2.25.5"', '"2.25.4"')),
     r"version: expected '2\.25\.5' \(where it is stored\), got '2\.25\.4'"),
    (lambda m: m.unlink(), r"manifest\.json: cannot read the stored manifest"),
])
def test_a_stored_manifest_that_does_not_validate_is_an_error_naming_it(tmp_path, damage, message):
    store = ArtifactStore(tmp_path / "store")
    store.save("x-transformers", "2.25.5", "decoder", "code1", _artifact(tmp_path / "made"))
    damage(store.folder("x-transformers", "2.25.5", "decoder") / "manifest.json")
    with pytest.raises(CompatError, match=message) as raised:
        store.lookup("x-transformers", "2.25.5", "decoder", "code1")
    assert "x-transformers/2.25.5/decoder/manifest.json" in str(raised.value)
