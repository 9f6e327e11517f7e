"""The conversion search: for a cell whose keys did not fit, the one conversion worth trying, and what it showed.

A strict load that fails on keys tells the host the producer's saved keys and the consumer's expected keys, with
their shapes (``finding["keys"]``). The candidate built from them:

- **renames and re-nestings**: keys of the same shape paired by name (``renames.probable_renames``), where a norm's
  scale may be called ``weight``, ``gamma``, ``g`` or ``scale`` and its shift ``bias`` or ``beta`` on either side;
- **reshapes and transposes** of a key whose shape changed but not its number of values;
- **repacked matrices**: a stack of square matrices saved where the consumer expects the upper triangles of their
  skew-symmetric parts, or back (``pack_skew`` / ``unpack_skew``: peft 0.16.0's OFT rotation), paired by name like
  renames;
- **dropped tensors**: saved keys the consumer has no place for (lossy unless they hold zeros: the worker says which);
- **new tensors**: expected keys the producer never had, added with the value the consumer's own freshly built model
  starts them at where the worker recorded it (``expected_constants``: an OFT scale at 1), else the value that leaves
  the layer as it was (a norm's scale 1, anything else 0);
- **changed defaults**: constructor defaults the recipe relies on that the consumer's release changed (the worker
  compares the producer's recorded signature defaults with its own, ``finding["defaults_changed"]``), passed with the
  producer's values as ``consumer_args``; this is also tried when the keys fit but the outputs differ. An argument
  the producer's release did not have yet gets the value of the first release that had it (``inherited_defaults``).

- **offsets**, in a second candidate tried only when the first leaves the keys fitting and the outputs apart without
  dropping values: ``add_constant`` for tensors the two releases initialise to different constants (each release's
  artifact records its freshly built model's constant tensors; ``offset_steps``).
- **new switches**, in the same second candidate, also where values were dropped: a boolean field of an adapter's
  config that the producer's release did not have, set against its default (``flipped_switches``: peft 0.16.0's
  ``use_cayley_neumann``, on by default, approximates the rotation 0.15.2 computed exactly).

Name and shape are never proof. The candidate is run in the consumer's environment like any rule (the runner does it
right after the cell, in the same worker), and the outputs decide: ``converted`` when they agree, ``lossy`` when the
conversion loads but cannot be exact because it dropped values or invented tensors (the cell says which, with their
norms, and how far the outputs moved). Pure functions; the runner does the I/O.
"""

from __future__ import annotations

import functools
import itertools
import json
import re
from typing import Callable

from packaging.version import InvalidVersion, Version

from compat.host.renames import probable_renames
from compat.host.wording import counted
from compat.shared.config import is_set, merge_config, nested, words

SCALE_NAMES = frozenset({"weight", "gamma", "g", "scale"})
SHIFT_NAMES = frozenset({"bias", "beta", "b"})


def candidate(finding: dict, inherited: dict | None = None) -> dict | None:
    """The rule set (``RuleSet`` data) to try for a state-dict finding whose keys did not fit or whose release changed
    a default, or None when there is nothing to try (the keys fit and no default changed, the outputs agree, or the
    worker recorded no shapes)."""
    keys = finding.get("keys") or {}
    shapes = keys.get("shapes")
    missing, unexpected = list(keys.get("missing") or []), list(keys.get("unexpected") or [])
    reshaped = keys.get("shape") or []
    arguments = merge_config(producer_arguments(finding), nested(inherited or {}))
    if not (missing or unexpected or reshaped):  # the keys fit: only a changed default can explain other outputs
        return {"consumer_args": arguments} if arguments and not outputs_agree(finding) else None
    if not isinstance(shapes, dict):
        return None
    renames = _renames(missing, unexpected, shapes)
    steps: list[dict] = []
    for old, new in _repacked(missing, unexpected, shapes, renames):
        renames[old] = new
        steps.append({"op": "pack_skew" if _skew_packed(shapes[old], shapes[new]) else "unpack_skew", "key": new})
    sized = sizing_arguments(finding)
    for change in reshaped:
        if change.get("key") in sized:
            continue  # an argument builds it at the producer's size
        step = _reshape(change)
        if step is None:
            return None  # a key whose number of values changed: no layout op carries it
        steps.append(step)
    arguments = merge_config(arguments, nested({entry["path"]: entry["value"] for entry in sized.values()}))
    for key in unexpected:
        if key not in renames:
            steps.append({"op": "drop", "key": key, "shape": list(shapes[key])})
    starts = finding.get("expected_constants") if isinstance(finding.get("expected_constants"), dict) else {}
    for key in missing:
        if key not in renames.values():
            value = starts.get(key)
            steps.append({"op": "add", "key": key, "shape": list(shapes[key]), "dtype": "F32",
                          "value": value if isinstance(value, (int, float)) else neutral_value(key, shapes[key])})
    rule: dict = {}
    if renames:
        rule["rename"] = renames
    if steps:
        rule["steps"] = steps
    if arguments:
        rule["consumer_args"] = arguments
    return rule or None


def offset_steps(rule: dict | None, producer: dict, consumer: dict) -> list[dict]:
    """``add_constant`` steps for tensors that the two releases initialise to different constants (``producer``,
    ``consumer``: key -> the one value a freshly built model holds there, as each release's artifact recorded it),
    followed through the rule's renames: a release that stores a norm's scale as ``w - 1`` starts it at 0 where
    another starts it at 1, so the same layer holds values 1 apart (x-transformers from 1.31.2, its
    ``norm_add_unit_offset``). Moving every value by the difference of the initial values keeps what the layer
    computes. A guess from contents like any candidate: the outputs decide."""
    renames = (rule or {}).get("rename") or {}
    dropped = {step["key"] for step in (rule or {}).get("steps") or [] if step.get("op") == "drop"}
    steps = []
    for key, value in sorted(producer.items()):
        target = renames.get(key, key)
        if key not in dropped and isinstance(consumer.get(target), (int, float)) and isinstance(value, (int, float)) \
                and consumer[target] != value:
            steps.append({"op": "add_constant", "key": target, "value": consumer[target] - value})
    return steps


def flipped_switches(finding: dict) -> dict:
    """The boolean fields an adapter's consumer has and the producer's release did not (read from a saved config
    that never mentions them, so with their default), set the other way: a new switch may turn on a change of
    behaviour by default. A guess like any candidate: the outputs decide."""
    config = finding.get("config")
    new = config.get("new_defaults") if isinstance(config, dict) else None
    if not isinstance(new, dict):
        return {}
    return {name: not value for name, value in new.items() if isinstance(value, bool)}


ROTARY_BUFFER = re.compile(r"(^|\.)rotary[^.]*\.inv_freq$")
QUERY_KEY = re.compile(r"(^|\.)(to_q|to_k|q_proj|k_proj|wq|wk)\.weight$")


def rotary_steps(shapes: dict[str, list[int]], renames: dict[str, str], forward: bool) -> list[dict]:
    """Rotary embeddings pair a head's dimensions either as (i, i + n/2) or as (2i, 2i + 1) (x-transformers switched
    in 1.30.1; Meta's Llama and transformers' differ the same way): the same attention then needs the rows of each
    head's query and key projections interleaved (or, back, deinterleaved). For a producer whose layout (``shapes``)
    has one rotary ``inv_freq`` (n/2 frequencies, so n rotated dimensions per head), each query and key weight whose
    rows are whole heads of n, under the first candidate's ``renames``. Which way is a guess (``forward``: from an
    older release to a newer one, the way x-transformers went); the outputs decide."""
    sizes = {shape[0] for key, shape in shapes.items() if ROTARY_BUFFER.search(key) and len(shape) == 1}
    if len(sizes) != 1:
        return []
    rotated = 2 * sizes.pop()
    return [{"op": "interleave" if forward else "deinterleave", "key": renames.get(key, key), "chunks": 2,
             "groups": shape[0] // rotated}
            for key, shape in sorted(shapes.items())
            if QUERY_KEY.search(key) and len(shape) == 2 and rotated and shape[0] % rotated == 0]


def forward_in_time(producer: str, consumer: str) -> bool:
    """Whether the consumer is the newer release (an unreleased version, not a release number, is)."""
    try:
        return _version(producer) < _version(consumer)
    except InvalidVersion:
        return True


def feature_switches(producer: dict, consumer: dict, config: dict) -> dict:
    """New boolean constructor arguments (the consumer's release has them, the producer's did not) about a feature
    the config turns on (a word of their name in the name of an argument the config sets true), set against their
    default, as nested ``consumer_args``: x-transformers 1.20.0 stopped rotating the values with the rotary
    embedding and added ``rotary_embed_values``, off. A guess like any candidate: the outputs decide."""
    if not producer:
        return {}
    features = set().union(*(words(path) for path, value in flat_arguments({"consumer_args": config}).items()
                             if value is True))
    return nested({path: not value for path, value in consumer.items()
                   if isinstance(value, bool) and path not in producer and not is_set(config, path)
                   and words(path.rsplit(".", 1)[-1]) & features})


def one_by_one(arguments: dict) -> list[dict]:
    """Nested ``consumer_args``, one argument each."""
    return [nested({path: value}) for path, value in flat_arguments({"consumer_args": arguments}).items()]


MOST_SUBSET_ARGUMENTS = 4  # 14 proper subsets of 4 arguments, each with and without offsets: 28 checks at most


def argument_subsets(rule: dict) -> list[dict]:
    """``rule`` with each proper subset of its ``consumer_args`` (largest first, the empty one last; emptied
    dictionaries removed), for a rule of 1 to ``MOST_SUBSET_ARGUMENTS`` arguments (more would cost too many checks).
    A changed default can be inert in the producer's release and live in the consumer's: x-transformers 1.42 has
    ``softclamp_output_value=30.`` behind a ``softclamp_output`` switch that is off, while 1.31 clamps whenever a
    value is set. Passing the producer's value then changes the model; leaving it at the consumer's default keeps it.
    Which arguments are inert is not known beforehand: the outputs decide."""
    arguments = flat_arguments(rule)
    if not 1 <= len(arguments) <= MOST_SUBSET_ARGUMENTS:
        return []
    names = sorted(arguments)
    kept_sets = [kept for size in range(len(names) - 1, -1, -1) for kept in itertools.combinations(names, size)]
    return [with_arguments(rule, {name: arguments[name] for name in kept}) for kept in kept_sets]


def with_arguments(rule: dict, arguments: dict) -> dict:
    """``rule`` with ``consumer_args`` replaced by ``arguments`` (dotted path -> value), none if they are empty."""
    rest = {key: value for key, value in rule.items() if key != "consumer_args"}
    return dict(rest, consumer_args=nested(arguments)) if arguments else rest


def build_refused(finding: dict) -> bool:
    """The consuming release could not build the model with the arguments it was given (``Broken`` in the worker)."""
    return finding.get("status") == "broken" and str(finding.get("reason", "")).startswith("consumer cannot build")


def without_argument(rule: dict, path: str) -> dict:
    """``rule`` without one of its ``consumer_args`` (dotted ``path``), emptied dictionaries removed: a release may
    fail on a value it accepts in its signature (x-transformers 1.31.0 and 1.31.1 on ``norm_add_unit_offset=True``),
    and the other arguments may still be needed."""
    return with_arguments(rule, {name: value for name, value in flat_arguments(rule).items() if name != path})


def keys_fit(finding: dict) -> bool:
    """The load found every key in place with its shape (under the finding's rule, if any)."""
    keys = finding.get("keys") or {}
    return not (keys.get("missing") or keys.get("unexpected") or keys.get("shape"))


def outputs_agree(finding: dict) -> bool:
    outputs = finding.get("outputs") or {}
    return bool(outputs) and all(isinstance(s, dict) and s.get("bitwise") for s in outputs.values())


def sizing_arguments(finding: dict) -> dict[str, dict]:
    """The arguments the consumer's worker found to build a reshaped key at the producer's size
    (``compat.envside.sizing``): key -> ``{"path", "value"}``, only well-formed entries."""
    sizing = finding.get("sizing")
    return {key: entry for key, entry in (sizing.items() if isinstance(sizing, dict) else [])
            if isinstance(entry, dict) and isinstance(entry.get("path"), str) and "value" in entry}


def producer_arguments(finding: dict) -> dict:
    """The constructor defaults the consumer's release changed (``finding["defaults_changed"]``: dotted path ->
    [producer's value, consumer's]), as nested ``consumer_args`` that pass the producer's values explicitly."""
    changed = finding.get("defaults_changed")
    return nested({path: values[0] for path, values in (changed.items() if isinstance(changed, dict) else [])
                   if isinstance(path, str) and isinstance(values, list) and len(values) == 2})


def inherited_arguments(producer: str, consumer: str, releases: list[str],
                        recorded: Callable[[str], tuple[dict, dict]]) -> dict:
    """``inherited_defaults`` for one cell: ``recorded(version)`` gives the defaults and config a release's artifact
    recorded; the releases between producer and consumer are walked from the producer's side. {} where either is
    not a release of the list, or the producer recorded no defaults (another kind, an older compat: no evidence)."""
    between = releases_between(producer, consumer, releases)
    if between is None:
        return {}
    (produced, config), (mine, _) = recorded(producer), recorded(consumer)
    if not produced:
        return {}
    return inherited_defaults(produced, mine, [recorded(version)[0] for version in between], config)


def releases_between(producer: str, consumer: str, releases: list[str]) -> list[str] | None:
    """The releases after the producer's up to the consumer's (included), from the producer's side, in either
    direction; None where either is not among ``releases``."""
    ordered = sorted(releases, key=_version)
    if producer not in ordered or consumer not in ordered:
        return None
    start, end = ordered.index(producer), ordered.index(consumer)
    return ordered[start + 1:end + 1] if start < end else ordered[end:start][::-1]


@functools.lru_cache(maxsize=4096)
def _version(text: str) -> Version:
    return Version(text)


def inherited_defaults(producer: dict, consumer: dict, nearer_first: list[dict], config: dict) -> dict:
    """Arguments the consumer has and the producer's release did not: the value an argument had in the release
    nearest the producer that has it (``nearer_first``: the defaults of the releases between, from the producer's
    side, then the consumer's), where that differs from the consumer's default. A new argument's first default
    usually keeps the behaviour from before it; when that default later changed (x-transformers added
    ``norm_add_unit_offset`` off and turned it on in 1.31.2), a checkpoint from before the argument needs the first
    value. A guess like any candidate: the outputs decide."""
    found = {}
    for path, value in consumer.items():
        if path in producer or is_set(config, path):
            continue
        first = next((defaults[path] for defaults in nearer_first if path in defaults), value)
        if json.dumps(first, sort_keys=True) != json.dumps(value, sort_keys=True):
            found[path] = first
    return found


def new_arguments(producer: dict, consumer: dict, config: dict) -> list[str]:
    """The defaults the consumer's release has and the producer's did not, that the config leaves to the release:
    where the releases between can supply a value (``inherited_defaults``)."""
    return [path for path in consumer if path not in producer and not is_set(config, path)] if producer else []


def neutral_value(key: str, shape: list[int]) -> float:
    """The value a new tensor takes so that its layer does what the producer's model did without it: 1 for a norm's
    scale (a vector named like one), 0 for everything else (a bias, a gate, a new projection)."""
    return 1.0 if len(shape) == 1 and key.rsplit(".", 1)[-1] in SCALE_NAMES else 0.0


def lost_tensors(finding: dict) -> list[str]:
    """What a conversion could not carry, from the worker's notes: the tensors dropped that held values, each with
    its norm (``norm.bias (norm 3.2)``)."""
    notes = finding.get("rule_notes") or []
    return [match.group(1) for note in notes if (match := re.fullmatch(r"lossy: dropped (.*), which is not all zeros",
                                                                        note))]


def invented_tensors(rule: dict | None) -> list[str]:
    """Tensors a rule adds that the producer never had (their values are a guess, verified only by the outputs)."""
    return [step["key"] for step in (rule or {}).get("steps", []) if step.get("op") == "add"]


def rule_lines(rule: dict) -> list[str]:
    """A rule set in lines a person reads: each rename, each step, then each setting of ``consumer_args`` (a model's
    constructor argument or an adapter config's field: ``set`` says both)."""
    lines = [f"rename {old} -> {new}" for old, new in (rule.get("rename") or {}).items()]
    lines += [f"rename /{item['pattern']}/ -> {item['replacement']}" for item in rule.get("rename_patterns") or []]
    for step in rule.get("steps") or []:
        detail = ", ".join(f"{k} {v}" for k, v in step.items() if k not in ("op", "key", "shape", "dtype", "from"))
        lines.append(f"{step['op']} {step.get('key', '')}{' (' + detail + ')' if detail else ''}".strip())
    lines += [f"set {name}={value!r}" for name, value in flat_arguments(rule).items()]
    return lines


def flat_arguments(rule: dict) -> dict:
    """A rule's ``consumer_args`` by dotted path (``layers.norm_add_unit_offset``), however nested."""
    flat: dict = {}

    def walk(arguments: dict, prefix: str) -> None:
        for name, value in arguments.items():
            if isinstance(value, dict):
                walk(value, f"{prefix}{name}.")
            else:
                flat[f"{prefix}{name}"] = value
    walk(rule.get("consumer_args") or {}, "")
    return flat


def rule_summary(rule: dict) -> str:
    """``10 renames, 6 drops, 1 setting``: what a rule set does, counted by op (settings: its ``consumer_args``)."""
    counts = {"rename": len(rule.get("rename") or {}) + len(rule.get("rename_patterns") or [])}
    for step in rule.get("steps") or []:
        counts[step["op"]] = counts.get(step["op"], 0) + 1
    counts["setting"] = len(flat_arguments(rule))
    return ", ".join(counted(n, op) for op, n in counts.items() if n) or "nothing"


def _renames(missing: list[str], unexpected: list[str], shapes: dict) -> dict[str, str]:
    """Saved key -> expected key, comparing names by role: a norm's ``weight`` and ``gamma`` are one name."""
    return dict(probable_renames({"missing": missing, "unexpected": unexpected, "shapes": shapes}, role_spelling))


def _repacked(missing: list[str], unexpected: list[str], shapes: dict, renames: dict) -> list[tuple[str, str]]:
    """Saved key -> expected key for the keys renames left unpaired whose shapes are one repacking apart."""
    keys = {"missing": [k for k in missing if k not in renames.values()],
            "unexpected": [k for k in unexpected if k not in renames], "shapes": shapes}
    return probable_renames(keys, role_spelling, lambda old, new: _skew_packed(old, new) or _skew_packed(new, old))


def _skew_packed(square: list[int], packed: list[int]) -> bool:
    """``packed`` holds the strict upper triangles of the (..., n, n) matrices of ``square``."""
    if len(square) < 2 or len(packed) != len(square) - 1 or square[-1] != square[-2] or square[-1] < 2:
        return False
    return list(square[:-2]) == list(packed[:-1]) and packed[-1] == square[-1] * (square[-1] - 1) // 2


def role_spelling(key: str) -> str:
    """``key`` with its last component written as its role (``scale``, ``shift``) where it names one."""
    head, _, last = key.rpartition(".")
    role = "scale" if last in SCALE_NAMES else "shift" if last in SHIFT_NAMES else last
    return f"{head}.{role}" if head else role


def _reshape(change: dict) -> dict | None:
    old, new = list(change["producer"]), list(change["consumer"])
    if _count(old) != _count(new):
        return None
    if len(old) == 2 and old == new[::-1]:
        return {"op": "transpose", "key": change["key"]}
    return {"op": "reshape", "key": change["key"], "shape": new, "from": old}


def _count(shape: list[int]) -> int:
    count = 1
    for size in shape:
        count *= size
    return count
