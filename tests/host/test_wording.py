from compat.host.wording import counted


def test_a_count_agrees_with_its_noun_and_verb():
    assert [counted(n, "tensor") for n in (0, 1, 2)] == ["0 tensors", "1 tensor", "2 tensors"]
    assert [counted(n, "key", ("looks", "look")) for n in (1, 3)] == ["1 key looks", "3 keys look"]
