"""Recipes that misbehave on purpose, in one release only, to prove faults stay in their cells; and a probe, to prove
a probe listed as a grid is refused.

They run inside a real x-transformers environment like any recipe. ``COMPAT_FAULT_VERSION`` names the release that
misbehaves; ``COMPAT_FAULT`` says how: unsupported (an unknown keyword), crash (SIGABRT), hang, or oom (allocate until the address-space limit bites).
"""

import os
import time
from importlib import metadata

import torch

from compat.envside.recipe import ProbeRecipe, StateDictRecipe

FAULT_VERSION = "0.30.0"


def _misbehave(kind: str) -> None:
    if metadata.version("x-transformers") != FAULT_VERSION:
        return
    if kind == "unsupported":
        raise TypeError("__init__() got an unexpected keyword argument 'novel_option'")
    if kind == "crash":
        os.abort()
    if kind == "hang":
        time.sleep(3600)
    if kind == "oom":
        hoard = []
        while True:
            hoard.append(torch.ones(256 * 1024 * 1024 // 4))


def _make(kind):
    def make(config):
        import x_transformers

        _misbehave(kind)
        return x_transformers.TransformerWrapper(
            num_tokens=16, max_seq_len=8, attn_layers=x_transformers.Decoder(dim=16, depth=1, heads=2))
    return make


def _inputs(generator):
    return {"tokens": torch.randint(0, 16, (1, 8), generator=generator)}


def _run(model, inputs):
    return {"logits": model(inputs["tokens"])}


RECIPES = {kind: StateDictRecipe(kind, {"kind": kind}, _make(kind), _inputs, _run)
           for kind in ("fine", "unsupported", "crash", "hang", "oom")}
def _make_after_a_burst(config):
    """Allocates and frees 640 MB first: a worker whose peak is far above what it holds afterwards."""
    burst = [torch.ones(2 * 1024 * 1024) for _ in range(80)]
    del burst
    return _make("fine")(config)


RECIPES["burst"] = StateDictRecipe("burst", {"kind": "burst"}, _make_after_a_burst, _inputs, _run)
RECIPES["probe"] = ProbeRecipe("probe", {}, lambda config: f"ran in {metadata.version('x-transformers')}")
