"""The prediction writers' shared rule: never write into a folder that already holds files unless asked to."""

from __future__ import annotations

from pathlib import Path

__all__ = ["refuse_non_empty_folder"]


def refuse_non_empty_folder(folder: Path, overwrite: bool) -> None:
    """Raise ``FileExistsError`` if ``folder`` exists with something in it and ``overwrite`` is false."""
    if not overwrite and folder.exists() and any(folder.iterdir()):
        raise FileExistsError(f"prediction folder {folder} is not empty; choose a new folder or pass overwrite=True")
