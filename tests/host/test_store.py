"""The store: one module owns the cache layout; keys change with what decides the contents, and only then."""

from __future__ import annotations

import json

from compat.host.store import Store, rule_text


def test_the_layout(tmp_path):
    store = Store(tmp_path)
    artifact = store.artifact("lib", "1.0", "recipe", "env", "code")
    assert artifact.parent == tmp_path / "artifacts" / "lib" / "1.0" / "recipe" and len(artifact.name) == 20
    result = store.result("lib", "recipe", "env", artifact, "code", "")
    assert result.parent == store.results() / "lib" / "recipe" and result.suffix == ".json"
    assert store.env("k") == tmp_path / "envs" / "k" and store.base("k") == tmp_path / "base" / "k"
    assert store.log("lib", "1.0").parent == tmp_path / "logs"
    assert store.lock("consume-x") == tmp_path / "locks" / "consume-x.lock"
    assert store.producing_lock("lib", "1.0") == tmp_path / "artifacts" / "lib" / "1.0.lock"


def test_keys_follow_their_parts(tmp_path):
    store = Store(tmp_path)
    one = store.artifact("lib", "1.0", "r", "env", "code")
    assert store.artifact("lib", "1.0", "r", "env", "code") == one
    assert store.artifact("lib", "1.0", "r", "env", "code2") != one  # recipe code changed
    assert store.artifact("lib", "1.0", "r", "env2", "code") != one  # environment changed
    plain = store.result("lib", "r", "env", one, "code", "")
    ruled = store.result("lib", "r", "env", one, "code", rule_text({"rename": {"a": "b"}}))
    assert plain != ruled


def test_a_rule_is_keyed_by_its_content_not_its_order():
    assert rule_text({"a": 1, "b": [1, 2]}) == rule_text({"b": [1, 2], "a": 1}) == json.dumps(
        {"a": 1, "b": [1, 2]}, sort_keys=True)
    assert rule_text(None) == rule_text({}) == ""
