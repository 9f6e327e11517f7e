"""Collect the warnings and log records a library emits while it loads something.

A load that "only warns" is the case compat exists to catch, so the messages are evidence, kept verbatim.
"""

from __future__ import annotations

import logging
import warnings

LOGGERS = ("", "peft", "transformers", "diffusers")  # transformers' and diffusers' loggers do not propagate


class captured:
    """Collect warnings and log records emitted while loading: a load that 'only warns' is the case to catch."""

    def __enter__(self) -> list[str]:
        self.messages: list[str] = []
        self._warnings = warnings.catch_warnings(record=True)
        self._recorded = self._warnings.__enter__()
        warnings.simplefilter("always")
        self._handler = _ListHandler(self.messages)
        for logger in LOGGERS:  # transformers' logger does not propagate to the root
            logging.getLogger(logger).addHandler(self._handler)
        return self.messages

    def __exit__(self, *exc_info) -> None:
        for logger in LOGGERS:
            logging.getLogger(logger).removeHandler(self._handler)
        self.messages[:0] = [f"{w.category.__name__}: {w.message}" for w in self._recorded]
        self._warnings.__exit__(*exc_info)


class _ListHandler(logging.Handler):
    def __init__(self, messages: list[str]):
        super().__init__(logging.WARNING)
        self.messages = messages

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(f"{record.levelname} {record.name}: {record.getMessage()}")
