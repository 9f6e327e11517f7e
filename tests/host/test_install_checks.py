"""Releases a matrix declares it cannot install: which are tried, and how a refusal reads."""

from __future__ import annotations

import pytest

from compat.host.install_checks import install_checks, summary, telling_line
from compat.host.matrix_file import load_matrix
from compat.host.registry import Release
from compat.shared.errors import MatrixError

MATRIX = """\
libraries:
  x-transformers:
    import: x_transformers
    fixtures: @FIXTURES@/x_transformers.py
    versions: [0.2.1]
    recipes: [decoder]
    uninstallable: @DECLARED@
"""


def test_every_declared_stable_release_not_in_the_matrix_is_tried(write_matrix):
    library = load_matrix(write_matrix(MATRIX.replace(
        "@DECLARED@", "[{versions: '<0.3', reason: needs Rust}]"))).libraries["x-transformers"]
    releases = [Release(v, "2023-01-01T00:00:00Z", yanked) for v, yanked in
                [("0.1.0", False), ("0.2.0", True), ("0.2.1", False), ("0.2.2rc1", False), ("0.2.2", False),
                 ("0.3.0", False)]]
    checks = install_checks(library, releases, ["0.2.1"])
    assert [c.id for c in checks] == ["x-transformers/cannot-install/0.1.0", "x-transformers/cannot-install/0.2.2"]
    assert checks[0].declared.reason == "needs Rust" and checks[0].declared.where.endswith("matrix.yaml:7")
    assert checks[0].request.version == "0.1.0" and checks[0].request.uploaded == "2023-01-01T00:00:00Z"


@pytest.mark.parametrize("declared, message", [
    ("[{versions: '<0.3'}]", r"uninstallable\[0\]: missing required key 'reason'"),
    ("[{versions: 'soon', reason: x}]", r"uninstallable\[0\]\.versions: expected a version range"),
    ("{versions: '<0.3', reason: x}", r"uninstallable: expected a list"),
])
def test_a_bad_declaration_names_its_field(write_matrix, declared, message):
    with pytest.raises(MatrixError, match=message):
        load_matrix(write_matrix(MATRIX.replace("@DECLARED@", declared)))


def test_a_refusal_reads_as_uvs_telling_line_and_an_install_as_stale():
    uv = ("error: Failed to build `safetensors==0.2.4`\n  cause: The build backend returned an error\n"
          "ModuleNotFoundError: No module named 'setuptools_rust'\n"
          "hint: This error likely indicates that `safetensors@0.2.4` depends on `setuptools_rust`")
    assert telling_line(uv) == "ModuleNotFoundError: No module named 'setuptools_rust'"
    assert telling_line("") == "no message"
    outcome = {"library": "safetensors", "version": "0.2.4", "reason": "needs Rust", "declared_at": "m.yaml:9"}
    assert summary(dict(outcome, installs=False, error=uv)) == (
        "safetensors 0.2.4 cannot be installed here: needs Rust (ModuleNotFoundError: No module named "
        "'setuptools_rust')")
    assert "installs: the declaration at m.yaml:9 (needs Rust) is stale" in summary(dict(outcome, installs=True,
                                                                                         error=""))
