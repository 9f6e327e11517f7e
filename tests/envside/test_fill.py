import torch

from compat.envside.compare import bitwise_equal
from compat.envside.fill import fill_parameters, fill_value


def test_fill_is_derived_from_the_name_only():
    assert bitwise_equal(fill_value("a.weight", (4, 4), torch.float32), fill_value("a.weight", (4, 4), torch.float32))
    assert not bitwise_equal(fill_value("a.weight", (4, 4), torch.float32),
                             fill_value("b.weight", (4, 4), torch.float32))


def test_fill_leaves_no_parameter_at_a_trivial_value_and_no_two_alike():
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.LayerNorm(4), torch.nn.Linear(4, 8))
    fill_parameters(model)
    tensors = dict(model.named_parameters())
    for name, tensor in tensors.items():
        assert tensor.std() > 0.01, name  # neither zeros, ones nor a constant
    flat = [t.detach().reshape(-1)[:4] for t in tensors.values()]
    for i in range(len(flat)):
        for j in range(i + 1, len(flat)):
            assert not torch.equal(flat[i], flat[j])


def test_swapped_halves_cannot_hide():
    weight = fill_value("norm_out.linear.weight", (8, 4), torch.float32)
    swapped = torch.cat([weight[4:], weight[:4]])
    assert not bitwise_equal(weight, swapped)
