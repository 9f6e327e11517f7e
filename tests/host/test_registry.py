"""Version selection against a package's releases: exact versions, latest, ranges and their samples."""

from __future__ import annotations

import http.server
import json
import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from compat.host.matrix import VersionSelector
from compat.host.registry import Release, fetch_releases, sample, select
from compat.host.store import Store
from compat.shared.errors import RegistryError

RELEASES = [Release(v, f"2024-01-{i + 1:02d}T00:00:00Z", v == "1.1.1") for i, v in enumerate(
    ["0.9.0", "1.0.0", "1.0.1", "1.1.0", "1.1.1", "1.2.0rc1", "2.0.0", "2.0.3"])]


def test_exact_latest_and_ranges():
    versions, problems = select((VersionSelector("exact", "1.0.1"), VersionSelector("latest", "latest")), RELEASES)
    assert (versions, problems) == (["1.0.1", "2.0.3"], [])
    # a range takes stable, unyanked releases only: not 1.1.1 (yanked) nor 1.2.0rc1
    versions, _ = select((VersionSelector("range", ">=1.0,<2", "all", "x"),), RELEASES)
    assert versions == ["1.0.0", "1.0.1", "1.1.0"]
    # an exact pin may name a yanked release: the user asked for it
    assert select((VersionSelector("exact", "1.1.1"),), RELEASES)[0] == ["1.1.1"]


def test_a_version_that_does_not_exist_is_a_problem_naming_the_nearest_releases():
    versions, problems = select((VersionSelector("exact", "1.0.2", where="m.yaml:3"),
                                 VersionSelector("range", ">=3", "all", "m.yaml:4")), RELEASES)
    assert versions == []
    assert problems[0].startswith("m.yaml:3: version 1.0.2 does not exist") and "1.0.1" in problems[0]
    assert problems[1] == "m.yaml:4: no release matches '>=3'"


def test_samples():
    stable = [r for r in RELEASES if not r.yanked and not r.parsed.is_prerelease]
    assert [r.version for r in sample(stable, "newest-patch-per-minor")] == ["0.9.0", "1.0.1", "1.1.0", "2.0.3"]
    assert [r.version for r in sample(stable, "newest-per-major")] == ["0.9.0", "1.1.0", "2.0.3"]
    assert sample(stable, "all") == stable


versions_strategy = st.lists(st.tuples(st.integers(0, 3), st.integers(0, 4), st.integers(0, 4)), min_size=1,
                             max_size=30, unique=True)


@given(versions_strategy, st.sampled_from(["all", "newest-patch-per-minor", "newest-per-major"]))
def test_a_sample_keeps_the_newest_of_each_group_and_nothing_else(triples, rule):
    releases = sorted((Release(".".join(map(str, t)), "", False) for t in triples), key=lambda r: r.parsed)
    kept = sample(releases, rule)
    width = {"all": 3, "newest-patch-per-minor": 2, "newest-per-major": 1}[rule]
    groups = {r.parsed.release[:width] for r in releases}
    assert len(kept) == len(groups)  # one per group
    for release in kept:  # and it is the newest of its group
        assert all(other.parsed <= release.parsed for other in releases
                   if other.parsed.release[:width] == release.parsed.release[:width])


@given(versions_strategy, st.integers(0, 3), st.integers(1, 4))
def test_a_range_selects_exactly_the_stable_releases_it_contains(triples, low, span):
    releases = sorted((Release(".".join(map(str, t)), "", False) for t in triples), key=lambda r: r.parsed)
    spec = f">={low},<{low + span}"
    versions, problems = select((VersionSelector("range", spec, "all", "x"),), releases)
    expected = [r.version for r in releases if SpecifierSet(spec).contains(r.version)]
    assert versions == expected and versions == sorted(versions, key=Version)
    assert problems == ([] if expected else [f"x: no release matches {spec!r}"])


def test_pre_releases_only_when_asked():
    """``latest-pre`` and ``pre: true`` admit pre-releases; ``latest`` and plain ranges never do."""
    releases = RELEASES + [Release("2.1.0rc1", "2024-02-01T00:00:00Z", False)]
    assert select((VersionSelector("latest", "latest"),), releases)[0] == ["2.0.3"]
    assert select((VersionSelector("latest-pre", "latest-pre"),), releases)[0] == ["2.1.0rc1"]
    assert select((VersionSelector("range", ">=1.1", "all", "x"),), releases)[0] == ["1.1.0", "2.0.0", "2.0.3"]
    assert select((VersionSelector("range", ">=1.1", "all", "x", pre=True),), releases)[0] == [
        "1.1.0", "1.2.0rc1", "2.0.0", "2.0.3", "2.1.0rc1"]


def _serve(body: bytes):
    """A one-package index on localhost (PEP 691 JSON), for the cache tests: no network beyond this machine."""
    class Index(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (the standard library's name)
            self.send_response(200)
            self.send_header("Content-Type", "application/vnd.pypi.simple.v1+json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Index)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_a_half_written_or_corrupt_registry_cache_is_fetched_again(tmp_path):
    """Under pytest -n 2 one process read the cache while another was writing it (an empty file): a cache that does
    not parse is no cache; and the cache is written whole or not at all."""
    body = json.dumps({"files": [{"filename": "pkg-1.0.0.tar.gz", "upload-time": "2024-01-01T00:00:00Z"}]}).encode()
    server = _serve(body)
    try:
        index = f"http://127.0.0.1:{server.server_port}/simple"
        cache = Store(tmp_path).registry("pkg")
        cache.parent.mkdir(parents=True, exist_ok=True)
        for text in ("", '{"files": [', "[]"):
            cache.write_text(text)
            assert [r.version for r in fetch_releases("pkg", index, tmp_path)] == ["1.0.0"]
            assert json.loads(cache.read_text())["files"][0]["filename"] == "pkg-1.0.0.tar.gz"
        assert [p.name for p in cache.parent.iterdir()] == [cache.name]  # no scratch file left beside it
    finally:
        server.shutdown()


def test_a_corrupt_registry_cache_with_the_index_unreachable_is_one_clear_error(tmp_path):
    cache = Store(tmp_path).registry("pkg")
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text('{"files": [')
    with pytest.raises(RegistryError, match="cannot read the releases of 'pkg'") as caught:
        fetch_releases("pkg", "http://127.0.0.1:9/simple", tmp_path, max_age=0)
    assert str(cache) in str(caught.value)
