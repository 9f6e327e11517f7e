"""Judging a transformers finding: transformers' own account of the load decides before the outputs do. Weights it
initialised at random because the checkpoint lacked them make the cell ``diverged`` (the silent break), whatever the
outputs; weights whose shape did not fit, a refusal. A model loaded in another dtype or with another attention
implementation is ``diverged`` when its outputs moved at all (a tolerance does not excuse it)."""

from __future__ import annotations

from compat.host.kinds.common import Verdict, by_outputs, refused
from compat.host.matrix import RecipeSpec
from compat.host.wording import counted

KIND = "transformers"
FIELDS = {
    "loading_info": (dict, "transformers' own account: missing_keys (initialised at random), restored_keys "
                           "(reported missing, but the producer's tensor after the load: tied again), missing_buffers (computed "
                           "by the consumer's constructor), "
                           "unexpected_keys (ignored), mismatched_keys"),
    "loaded_as": (dict, "producer and consumer: dtype and attention implementation of the model"),
    "config": (dict, "unknown_fields (saved, unknown to this release), new_fields (this release's, not saved)"),
}


def judge(finding: dict, recipe: RecipeSpec) -> Verdict:
    verdict = refused(finding, keys_refuse=False)
    if verdict:
        return verdict
    info = finding.get("loading_info") or {}
    if info.get("mismatched_keys"):
        unfit = info["mismatched_keys"]
        return "incompatible", f"{counted(len(unfit), 'weight', ('does', 'do'))} not fit this release's shapes " \
            f"(e.g. {unfit[0]})"
    if info.get("missing_keys"):
        missing = counted(len(info["missing_keys"]), "weight", ("is", "are"))
        return "diverged", (f"loads, but {missing} initialised at random because the "
                            f"checkpoint lacks them (e.g. {', '.join(info['missing_keys'][:3])})")
    verdict, summary = by_outputs(finding, recipe)
    loaded = finding.get("loaded_as") or {}
    producer, consumer = loaded.get("producer") or {}, loaded.get("consumer") or {}
    moved = [f"{name} {producer.get(name)} -> {consumer.get(name)}" for name in ("dtype", "attention")
             if producer.get(name) and consumer.get(name) and producer[name] != consumer[name]]
    if moved and not all(stats.get("bitwise") for stats in finding["outputs"].values()):
        # another dtype or attention implementation that moves the outputs at all is the break, not a tolerance
        return "diverged", f"loaded differently ({'; '.join(moved)}), and the outputs moved: {summary}"
    return verdict, summary + (f"; loaded differently, outputs bitwise equal: {'; '.join(moved)}" if moved else "")


def evidence(finding: dict, limit: int = 12) -> list[str]:
    lines = []
    for name, label in (("missing_keys", "initialised at random"), ("unexpected_keys", "ignored by transformers"),
                        ("mismatched_keys", "shape does not fit"),
                        ("restored_keys", "reported missing, restored by tying"),
                        ("missing_buffers", "buffers not in the checkpoint, computed by this release")):
        items = (finding.get("loading_info") or {}).get(name) or []
        if items:
            lines.append(f"{label}: {', '.join(items[:limit])}" + (f" (+{len(items) - limit} more)"
                                                                   if len(items) > limit else ""))
    config = finding.get("config") or {}
    if config.get("unknown_fields"):
        lines.append(f"config fields this release does not know: {', '.join(config['unknown_fields'][:limit])}")
    if config.get("new_fields"):
        lines.append(f"config fields this release adds (its defaults apply): {', '.join(config['new_fields'][:limit])}")
    loaded = finding.get("loaded_as") or {}
    if loaded:
        lines.append(f"loaded as: {loaded.get('consumer')} (saved as {loaded.get('producer')})")
    return lines
