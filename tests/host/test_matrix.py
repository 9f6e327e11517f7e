"""Validation of matrix files: every problem is named with file, line and field."""

import re

import pytest

from compat.host.matrix import SHIPPED_FIXTURES
from compat.host.matrix_file import load_matrix
from compat.host.pipconfig import read_index_settings
from compat.host.plan import make_plan
from compat.shared.errors import MatrixError

GOOD = """\
defaults:
  tolerance: {atol: 1.0e-5, rtol: 1.0e-4}
libraries:
  x-transformers:
    import: x_transformers
    fixtures: @FIXTURES@/x_transformers.py
    versions:
      - 0.30
      - latest
      - ">=1.0,<2"
      - {range: ">=2.0", sample: newest-patch-per-minor}
    recipes:
      decoder: {tolerance: {atol: 1.0e-3, outputs: {logits: {atol: 0.5}}}}
      encoder: {}
    pins:
      - {versions: "<0.31", requirements: ["einops<0.7"], why: "old einops API"}
    known_breaks:
      - producers: "<0.29"
        consumers: ">=0.29"
        reason: "norms renamed"
        link: https://github.com/lucidrains/x-transformers
"""


def test_a_good_matrix_loads(write_matrix):
    matrix = load_matrix(write_matrix(GOOD))
    library = matrix.libraries["x-transformers"]
    assert [s.kind for s in library.versions] == ["exact", "latest", "range", "range"]
    assert library.versions[0].value == "0.30"  # read as written, not as the number 0.3
    assert library.versions[3].sample == "newest-patch-per-minor"
    decoder = library.recipes["decoder"]
    assert decoder.tolerance.atol == 1e-3 and decoder.tolerance.rtol == 1e-4
    assert decoder.tolerance_for("logits").atol == 0.5 and decoder.tolerance_for("other").atol == 1e-3
    assert library.pins_for("0.30") == ("einops<0.7",) and library.pins_for("0.31") == ()
    known = library.known_break("decoder", "0.28.4", "1.0.0")
    assert known and known.upstream == "documented" and known.where.endswith(":18")
    assert library.known_break("decoder", "0.29.0", "1.0.0") is None


@pytest.mark.parametrize("change, line, pattern", [
    (("import: x_transformers", "import: x_transformers\n    colour: blue"), 6, r"libraries\.x-transformers\.colour: unknown key 'colour'"),
    (("- latest", "- not.a.version!"), 9, r"versions\[1\]: expected a release version"),
    (("- latest", "- {range: '>=1', sample: sometimes}"), 9, r"versions\[1\]\.sample: expected one of all, newest-patch"),
    (('- ">=1.0,<2"', '- ">=1.0,<<2"'), 10, r"versions\[2\]: expected a version range"),
    (("{atol: 1.0e-3,", "{atol: lots,"), 13, r"decoder\.tolerance\.atol: expected a number >= 0.0, got str 'lots'"),
    (('requirements: ["einops<0.7"]', "requirements: einops"), 16, r"pins\[0\]\.requirements: expected a list"),
    (('requirements: ["einops<0.7"]', 'requirements: ["einops<<0.7"]'), 16, r"pins\[0\]\.requirements\[0\]: not a valid requirement"),
    (('reason: "norms renamed"', "reason: 12"), 20, r"known_breaks\[0\]\.reason: expected a non-empty string, got int 12"),
    (("link: https://github.com/lucidrains/x-transformers", "link: somewhere"), 21, r"known_breaks\[0\]\.link: expected an http"),
    (("    recipes:\n", "    recipez:\n"), 12, r"recipez: unknown key"),
])
def test_each_problem_names_file_line_and_field(write_matrix, change, line, pattern):
    path = write_matrix(GOOD.replace(*change))
    with pytest.raises(MatrixError) as caught:
        load_matrix(path)
    message = str(caught.value)
    assert re.search(pattern, message), message
    assert f"{path}:{line}:" in message, message


def test_all_problems_are_reported_at_once(write_matrix):
    path = write_matrix(GOOD.replace("import: x_transformers", "import: 5").replace("- latest", "- 1..2"))
    with pytest.raises(MatrixError) as caught:
        load_matrix(path)
    assert len(caught.value.problems) == 2


@pytest.mark.parametrize("text, pattern", [
    ("libraries: [a, b]", r":1: libraries: expected a mapping of library name"),
    ("libraries:\n  x: {import: x, versions: [1.0], recipes: {}}", r"recipes: expected a list of recipe names"),
    ("libraries:\n  x: {versions: 1.0, recipes: [a]}", r"missing required key 'import'"),
    ("foo: [", r"not valid YAML"),
    ("libraries: {}\nlibraries: {}", r"duplicate key 'libraries'"),
    ("", r"expected a mapping, got nothing"),
])
def test_malformed_documents(write_matrix, text, pattern):
    with pytest.raises(MatrixError, match=pattern):
        load_matrix(write_matrix(text))


def test_missing_file_and_missing_fixtures(tmp_path, write_matrix, cache_dir):
    with pytest.raises(MatrixError, match="matrix file not found"):
        load_matrix(tmp_path / "nope.yaml")
    matrix = write_matrix("libraries:\n  x-transformers:\n    import: x_transformers\n    fixtures: nowhere.py\n"
                          "    versions: [0.30.0, 0.0.99]\n    recipes: [decoder]\n")
    with pytest.raises(MatrixError) as caught:
        make_plan(load_matrix(matrix), cache_dir, read_index_settings())
    # where it looked, and the file's other problems too
    assert f"{matrix}:4: libraries.x-transformers.fixtures: recipe module {tmp_path / 'nowhere.py'} does not exist " \
           f"(a relative path is taken from the matrix file's folder, {tmp_path})" in caught.value.problems
    assert any("version 0.0.99 does not exist" in problem for problem in caught.value.problems)


def test_a_matrix_outside_the_project_uses_the_recipes_compat_ships(write_matrix):
    library = load_matrix(write_matrix("libraries:\n  x-transformers:\n    import: x_transformers\n"
                                       "    versions: [0.30.0]\n    recipes: [decoder]\n")).libraries["x-transformers"]
    assert library.fixtures == SHIPPED_FIXTURES / "x_transformers.py" and library.fixtures_problem is None


def test_a_recipe_name_typo_is_a_validation_error_naming_the_line(write_matrix, cache_dir):
    matrix = write_matrix("libraries:\n  x-transformers:\n    import: x_transformers\n"
                          "    fixtures: @FIXTURES@/x_transformers.py\n    versions: [0.30.0]\n"
                          "    recipes: [decoder, decodr]\n")
    with pytest.raises(MatrixError) as caught:
        make_plan(load_matrix(matrix), cache_dir, read_index_settings())
    assert len(caught.value.problems) == 1
    assert caught.value.problems[0].startswith(f"{matrix}:6: libraries.x-transformers.recipes: no recipe 'decodr' in ")
    assert "did you mean 'decoder'? it has: decoder, encoder" in caught.value.problems[0]


def test_the_default_matrix_is_valid():
    matrix = load_matrix()
    assert "x-transformers" in matrix.libraries


def test_conversion_rules_are_validated_and_matched(write_matrix):
    rules = ("    rules:\n"
             "      - {producers: '<0.33', consumers: '>=0.33', recipes: [decoder], why: net renamed to ff,\n"
             "         rule: {rename_patterns: [{pattern: '\\.net\\.', replacement: '.ff.'}]}}\n")
    matrix = load_matrix(write_matrix(GOOD.replace("    known_breaks:", rules + "    known_breaks:")))
    library = matrix.libraries["x-transformers"]
    assert library.rule_for("decoder", "0.30.0", "1.0.0").rule["rename_patterns"][0]["replacement"] == ".ff."
    assert library.rule_for("encoder", "0.30.0", "1.0.0") is None
    bad = rules.replace("rename_patterns", "rename_patternz")
    with pytest.raises(MatrixError, match=r"rules\[0\]\.rule: rule: unknown field"):
        load_matrix(write_matrix(GOOD.replace("    known_breaks:", bad + "    known_breaks:")))


def test_a_missing_key_is_one_message_not_two(write_matrix):
    text = ("libraries:\n  x-transformers:\n    import: x_transformers\n    versions: [1.0.0]\n    recipes: [decoder]\n"
            "    known_breaks:\n      - {recipes: [decoder], reason: r, upstream: documented}\n")
    with pytest.raises(MatrixError) as error:
        load_matrix(write_matrix(text))
    lines = str(error.value).splitlines()
    assert [line.split(": ", 2)[-1] for line in lines] == ["missing required key 'consumers'",
                                                           "missing required key 'producers'"]
