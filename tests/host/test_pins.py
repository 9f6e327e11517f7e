from compat.host.pins import advice, constraint


def cell(producer, consumer, underlying, recipe="r"):
    return {"library": "lib", "recipe": recipe, "producer": producer, "consumer": consumer, "underlying": underlying}


def test_newest_reader_skips_gaps_and_ignores_recipes_a_release_lacks():
    cells = [cell("1.0", c, v) for c, v in (("1.0", "identical"), ("1.1", "incompatible"), ("1.2", "equivalent"),
                                              ("2.0", "diverged"))]
    cells += [cell("1.0", "1.2", "not-applicable", recipe="s"), cell("1.0", "2.0", "identical", recipe="s")]
    row = advice(cells)["lib"][0]
    assert row["producer"] == "1.0" and row["newest"] == "1.2" and row["refuses"] == ["1.1", "2.0"]
    assert constraint("lib", row) == "lib>=1.0,<=1.2,!=1.1"


def test_converted_is_listed_apart_and_no_reader_says_so():
    cells = [cell("1.0", "1.0", "identical"), cell("1.0", "2.0", "converted"), cell("2.0", "2.0", "incompatible")]
    table = advice(cells)["lib"]
    assert table[0]["newest"] == "1.0" and table[0]["newest_converted"] == "2.0"
    assert table[1]["newest"] is None and constraint("lib", table[1]).startswith("# no tested release")


def test_a_release_that_produced_nothing_has_no_row_and_is_not_listed_as_refusing():
    """x-transformers 1.27.2 cannot build the continuous wrapper: its cells say nothing about reading checkpoints."""
    failed = {"status": "broken", "reason": "producer 1.27.2: building: AttributeError", "failed": "producer"}
    cells = [cell("1.0", "1.0", "identical"), cell("1.0", "1.27.2", "identical"),
             dict(cell("1.27.2", "1.0", "incompatible"), evidence=failed),
             dict(cell("1.27.2", "1.27.2", "incompatible"), evidence=failed),
             cell("1.0", "3.0", "error"), cell("3.0", "3.0", "not-applicable")]
    table = advice(cells)["lib"]
    assert [row["producer"] for row in table] == ["1.0"]
    assert table[0]["reads"] == ["1.0", "1.27.2"] and table[0]["refuses"] == []
