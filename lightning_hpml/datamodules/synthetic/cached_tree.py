"""A DataModule's synthetic dataset, written once into a cache folder keyed by the writer's options.

``root=None`` means "generate a small dataset in the real on-disk layout, then read it with the same loader"
(``shared/DESIGN.md``). :class:`SyntheticTreeMixin` gives a DataModule that behaviour: ``data_root`` is ``root``, or
``synthetic_dir``, or ``$XDG_CACHE_HOME/lightning_hpml/synthetic/<synthetic_folder>-<hash of the options>``;
``prepare_data`` writes the tree into a temporary sibling, adds a marker file holding the options, and renames it
into place, so an interrupted or concurrent write never leaves a half tree that a later run would read.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Literal

from lightning.pytorch.utilities import rank_zero_info

__all__ = ["SYNTHETIC_MARKER", "SyntheticTreeMixin", "synthetic_cache_dir"]

SYNTHETIC_MARKER = ".lightning_hpml_synthetic.json"
"""File in a complete synthetic tree holding the key (writer, version, options) it was written with."""
_SYNTHETIC_FORMAT_VERSION = 1


def synthetic_cache_dir() -> Path:
    """Folder holding the cached synthetic trees: ``$XDG_CACHE_HOME`` (or ``~/.cache``)/lightning_hpml/synthetic."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "lightning_hpml" / "synthetic"


class SyntheticTreeMixin(ABC):
    """Mix into a LightningDataModule (before it in the bases) that keeps ``root`` and ``synthetic_dir``.

    Subclasses name the cache folder (``synthetic_folder``, a class attribute or property) and implement
    :meth:`resolved_synthetic_options` and :meth:`write_synthetic_tree`.
    """

    synthetic_folder: str

    @abstractmethod
    def resolved_synthetic_options(self) -> dict[str, Any]:
        """Keyword arguments of the synthetic writer for ``root=None``."""

    @abstractmethod
    def write_synthetic_tree(self, folder: Path) -> None:
        """Write the synthetic dataset, in the real on-disk layout, into the empty ``folder``."""

    def _synthetic_key(self) -> dict[str, Any]:
        """What identifies a synthetic tree: the format version, the DataModule class and the writer's options."""
        return {
            "version": _SYNTHETIC_FORMAT_VERSION,
            "writer": f"{type(self).__module__}.{type(self).__qualname__}",
            "options": json.loads(json.dumps(self.resolved_synthetic_options(), sort_keys=True, default=str)),
        }

    @property
    def data_root(self) -> Path:
        """Folder the data are read from: ``root``, or the synthetic tree when ``root`` is ``None``."""
        if self.root is not None:
            return Path(self.root).expanduser()
        if self.synthetic_dir is not None:
            return Path(self.synthetic_dir).expanduser()
        digest = hashlib.sha256(json.dumps(self._synthetic_key(), sort_keys=True).encode()).hexdigest()[:12]
        return synthetic_cache_dir() / f"{self.synthetic_folder}-{digest}"

    def _synthetic_state(self, folder: Path) -> Literal["complete", "absent", "other"]:
        marker = folder / SYNTHETIC_MARKER
        if marker.is_file():
            try:
                stored = json.loads(marker.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError):
                return "other"
            return "complete" if stored == self._synthetic_key() else "other"
        if not folder.exists() or (folder.is_dir() and not any(folder.iterdir())):
            return "absent"
        return "other"

    def prepare_data(self) -> None:
        """With ``root=None``, write the synthetic tree unless a complete one with the same options exists.

        Raises:
            FileExistsError: ``synthetic_dir`` holds something else (another dataset, other options, or an
                interrupted write); nothing there is deleted.
        """
        if self.root is not None:
            return
        target = self.data_root
        state = self._synthetic_state(target)
        if state == "complete":
            return
        if state == "other":
            raise FileExistsError(
                f"synthetic_dir {target} is not empty and is not a complete synthetic tree written with the "
                f"options {self._synthetic_key()}; delete it or choose another synthetic_dir"
            )
        rank_zero_info(f"{type(self).__name__}: writing a synthetic dataset to {target} (once; reused afterwards)")
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.parent / f".{target.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        try:
            tmp.mkdir()
            self.write_synthetic_tree(tmp)
            (tmp / SYNTHETIC_MARKER).write_text(json.dumps(self._synthetic_key(), sort_keys=True), encoding="utf-8")
            if target.is_dir():
                target.rmdir()  # empty (checked above); os.replace cannot replace a directory
            os.replace(tmp, target)
        except OSError:
            if self._synthetic_state(target) != "complete":  # another process may have finished it first
                raise
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)

    def _require_synthetic_tree(self) -> None:
        """Raise if ``root=None`` and ``prepare_data`` has not written the tree."""
        if self.root is None and self._synthetic_state(self.data_root) != "complete":
            raise FileNotFoundError(
                f"no complete synthetic dataset at {self.data_root}; call prepare_data() first (the Trainer does)"
            )
