"""pip's index and find-links settings, passed through to uv.

uv does not read pip's configuration, but the user's torch source (a CPU wheel in a find-links folder, a private
index) lives there. We read the same places pip reads, in pip's order of precedence, and translate them into uv
arguments. pip merges all its indexes and takes the best match; uv's equivalent is ``unsafe-best-match``.
"""

from __future__ import annotations

import configparser
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

PYPI = "https://pypi.org/simple"


@dataclass(frozen=True)
class IndexSettings:
    index_url: str = PYPI
    extra_index_urls: tuple[str, ...] = ()
    find_links: tuple[str, ...] = ()
    no_index: bool = False
    sources: tuple[str, ...] = field(default=(), compare=False)

    def uv_args(self) -> list[str]:
        args = ["--no-index"] if self.no_index else ["--index-url", self.index_url]
        for url in self.extra_index_urls:
            args += ["--extra-index-url", url]
        for link in self.find_links:
            args += ["--find-links", link]
        if self.extra_index_urls or self.find_links:
            args += ["--index-strategy", "unsafe-best-match"]
        return args

    def identity(self) -> dict:
        return {"index_url": self.index_url, "extra_index_urls": list(self.extra_index_urls),
                "find_links": list(self.find_links), "no_index": self.no_index}


def pip_config_files(environ: Mapping[str, str]) -> list[Path]:
    """pip's configuration files, lowest precedence first (global, user, site, then PIP_CONFIG_FILE)."""
    home = Path(environ.get("HOME", "~")).expanduser()
    xdg_dirs = environ.get("XDG_CONFIG_DIRS", "/etc/xdg").split(":")
    files = [Path(d) / "pip" / "pip.conf" for d in xdg_dirs] + [Path("/etc/pip.conf")]
    files += [home / ".pip" / "pip.conf", Path(environ.get("XDG_CONFIG_HOME", home / ".config")) / "pip" / "pip.conf"]
    files.append(Path(environ.get("VIRTUAL_ENV", sys.prefix)) / "pip.conf")
    if environ.get("PIP_CONFIG_FILE") and environ["PIP_CONFIG_FILE"] != os.devnull:
        files.append(Path(environ["PIP_CONFIG_FILE"]))
    return files


def read_index_settings(environ: Mapping[str, str] | None = None,
                        config_files: list[Path] | None = None) -> IndexSettings:
    environ = os.environ if environ is None else environ
    if environ.get("PIP_CONFIG_FILE") == os.devnull:
        config_files = []
    values: dict[str, str] = {}
    sources = []
    for path in pip_config_files(environ) if config_files is None else config_files:
        parser = configparser.RawConfigParser()
        try:
            if not parser.read(path):
                continue
        except configparser.Error:
            continue
        for section in ("global", "install"):
            if parser.has_section(section):
                for key in ("index-url", "extra-index-url", "find-links", "no-index"):
                    if parser.has_option(section, key):
                        values[key] = parser.get(section, key)
                        sources.append(f"{path}[{section}]{key}")
    for key in ("index-url", "extra-index-url", "find-links", "no-index"):
        variable = "PIP_" + key.upper().replace("-", "_")
        if variable in environ:
            values[key] = environ[variable]
            sources.append(variable)
    return IndexSettings(
        index_url=values.get("index-url", PYPI).strip() or PYPI,
        extra_index_urls=tuple(values.get("extra-index-url", "").split()),
        find_links=tuple(values.get("find-links", "").split()),
        no_index=values.get("no-index", "").strip().lower() in ("1", "true", "yes", "on"),
        sources=tuple(sources))
