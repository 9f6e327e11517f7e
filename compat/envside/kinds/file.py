"""The file kind: a file format under test. One release writes tensors with its own API (``safetensors.torch`` or
``safetensors.numpy``), another reads the file back with the same API, and every tensor, its dtype, its shape and the
metadata must come back bit for bit.

What was written is recorded by compat itself (digests computed from the tensors before they were handed to the
writer), so a reader is held to what was meant, not to what another reader made of the file. A writer that cannot
write the case (a dtype it does not know, shared tensors it refuses) makes it not-applicable for that release, with
its own message.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping

import torch

from compat.envside import artifact, compare
from compat.envside.engine import NotApplicable, Produced, Recipe, describe, load_evidence

FILE = "data.safetensors"


class FileRecipe(Recipe):
    """``make_tensors()`` gives the tensors to write (torch); ``api`` is ``torch`` or ``numpy``; ``metadata`` the
    file's string metadata, if any."""

    kind = "file"

    def __init__(self, name: str, make_tensors: Callable[[], dict[str, torch.Tensor]], api: str = "torch",
                 metadata: Mapping[str, str] | None = None, config: Mapping[str, Any] | None = None):
        super().__init__(name, dict(config or {}, api=api, metadata=dict(metadata or {})))
        self._make_tensors, self.api, self.metadata = make_tensors, api, dict(metadata or {})

    def tensors(self) -> dict[str, torch.Tensor]:
        try:
            return self._make_tensors()
        except (AttributeError, TypeError, RuntimeError) as exc:  # this torch has no such dtype
            raise NotApplicable(f"this torch cannot make it: {describe(exc)}") from exc

    def write(self, tensors: dict[str, torch.Tensor], path: Path) -> None:
        metadata = self.metadata or None
        if self.api == "numpy":
            from safetensors.numpy import save_file

            save_file({name: tensor.numpy() for name, tensor in tensors.items()}, str(path), metadata=metadata)
        else:
            from safetensors.torch import save_file

            save_file(tensors, str(path), metadata=metadata)

    def read(self, path: Path) -> tuple[dict[str, torch.Tensor], dict | None]:
        from safetensors import safe_open

        framework = "np" if self.api == "numpy" else "pt"
        with safe_open(str(path), framework=framework) as handle:
            metadata = handle.metadata()
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}
        if self.api == "numpy":
            tensors = {name: torch.from_numpy(array.copy()) for name, array in tensors.items()}
        return tensors, metadata

    def produce(self, folder: Path, checkpoint: str | None) -> Produced:
        tensors = self.tensors()
        expected = {name: {"shape": list(t.shape), "dtype": artifact.dtype_name(t),
                           "digest": artifact.tensor_digest(t)} for name, t in tensors.items()}
        folder.mkdir(parents=True, exist_ok=True)
        try:
            self.write(tensors, folder / FILE)
        except Exception as exc:  # noqa: BLE001 - a writer that cannot write the case does not have it
            raise NotApplicable(f"this release does not write it: {describe(exc)}") from exc
        return Produced(expected, fields={"file": {"api": self.api, "metadata": self.metadata,
                                                   "bytes": (folder / FILE).stat().st_size}})

    def consume(self, folder: Path, manifest: dict, finding: dict, rule: dict | None) -> None:
        tensors, metadata = load_evidence(finding, lambda: self.read(folder / FILE))
        finding["keys"] = compare.diff_keys(artifact.without_digests(manifest["keys"]),
                                            artifact.key_layout(tensors, with_digest=False))
        finding["tensors_changed_on_load"] = sorted(
            name for name, entry in manifest["keys"].items()
            if name in tensors and artifact.tensor_digest(tensors[name]) != entry["digest"])
        written = manifest["file"]["metadata"]
        # some writers add {"format": "pt"} of their own accord: not a difference unless the recipe wrote it
        read = {k: v for k, v in (metadata or {}).items() if k != "format" or "format" in written}
        finding["file"] = {"tensors": len(tensors), "metadata_written": written, "metadata_read": read}
