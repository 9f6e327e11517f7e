"""Counts in the words users read (verdict summaries, progress, the CLI): one place that makes a number agree with
its noun, so no message says "1 tensors" or "step(s)"."""

from __future__ import annotations


def counted(count: int, noun: str, verb: tuple[str, str] | None = None) -> str:
    """``1 rename``, ``2 renames``: a count and its noun, the noun given in the singular; with ``verb`` (singular,
    plural) the verb that agrees follows (``1 weight is``, ``3 weights are``)."""
    words = f"{count} {noun}{'s' if count != 1 else ''}"
    if not verb:
        return words
    singular, plural = verb
    return f"{words} {singular if count == 1 else plural}"
