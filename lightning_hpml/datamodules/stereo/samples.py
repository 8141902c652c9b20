"""Stereo samples as file paths: the one record every stereo parser produces and every stereo dataset reads.

A parser (one per on-disk layout: Scene Flow, KITTI, or a FADNet-style list file) turns a dataset folder into a
list of :class:`StereoSample`; :class:`~lightning_hpml.datamodules.stereo.dataset.StereoDataset` reads only these.
Keeping format knowledge in the parsers and file reading in the dataset means a new layout is one parser.

FADNet list files (e.g. ``lists/FlyingThings3D_release_TEST.list``) hold one sample per line,
``<left> <right> <disparity>``, separated by spaces or tabs, paths relative to the dataset root.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

__all__ = ["StereoSample", "check_samples_exist", "default_sample_name", "read_list_file"]

_SHOW_MISSING = 5


@dataclass(frozen=True)
class StereoSample:
    """File paths of one rectified stereo pair and, for labelled splits, its left-view disparity.

    Attributes:
        left: Left (reference) image.
        right: Right image.
        disparity: Ground-truth disparity of the left view, or ``None`` for unlabelled (test/benchmark) pairs.
        name: Relative output stem (POSIX separators, no suffix) under which a prediction for this pair is
            written, e.g. ``disp_0/000000_10`` (KITTI) or ``FlyingThings3D/TEST/A/0000/left/0006`` (Scene Flow).
    """

    left: Path
    right: Path
    disparity: Path | None
    name: str


def default_sample_name(left: str) -> str:
    """Name a sample by its left image path as written in a list file, without the suffix.

    Args:
        left: The left-image entry of a list file (relative to the dataset root).

    Returns:
        The POSIX path without suffix, e.g. ``frames/left/0001`` for ``frames/left/0001.png``.
    """
    path = PurePosixPath(left.replace("\\", "/"))
    return str(path.with_suffix("")).lstrip("/")


def read_list_file(
    path: str | Path,
    root: str | Path,
    name_fn: Callable[[str], str] = default_sample_name,
) -> list[StereoSample]:
    """Read a FADNet-style list file into samples.

    Each non-empty line is ``<left> <right> <disparity>`` (spaces or tabs; a line with only ``<left> <right>``
    is an unlabelled pair). Blank lines and lines starting with ``#`` are skipped. Relative paths are joined to
    ``root``; absolute ones are kept. A list must be all labelled or all unlabelled, since a batch cannot mix the
    two.

    Args:
        path: The list file.
        root: Dataset root the paths in the file are relative to.
        name_fn: Maps the left-image entry (as written) to the sample's output name.

    Returns:
        The samples in file order. Files are not checked here; see :func:`check_samples_exist`.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: A line does not have 2 or 3 fields, labelled and unlabelled lines are mixed, or the file
            holds no sample. The message gives the file and line number.
    """
    path = Path(path)
    root = Path(root)
    if not path.is_file():
        raise FileNotFoundError(f"list file {path} does not exist")
    samples: list[StereoSample] = []
    first_labelled: tuple[int, bool] | None = None
    with path.open("r", encoding="utf-8") as handle:
        for line_no, raw in enumerate(handle, start=1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            fields = line.split()
            if len(fields) not in (2, 3):
                raise ValueError(
                    f"{path}:{line_no}: expected 'left right disparity' (3 paths separated by spaces or tabs, "
                    f"or 2 for unlabelled pairs), found {len(fields)} field(s): {line!r}"
                )
            labelled = len(fields) == 3
            if first_labelled is None:
                first_labelled = (line_no, labelled)
            elif first_labelled[1] != labelled:
                raise ValueError(
                    f"{path}:{line_no}: has {len(fields)} fields but line {first_labelled[0]} has "
                    f"{3 if first_labelled[1] else 2}; a list must be all labelled (3 fields) or all unlabelled (2)"
                )
            samples.append(
                StereoSample(
                    left=root / fields[0],
                    right=root / fields[1],
                    disparity=root / fields[2] if labelled else None,
                    name=name_fn(fields[0]),
                )
            )
    if not samples:
        raise ValueError(f"list file {path} holds no sample (expected lines 'left right disparity')")
    return samples


def check_samples_exist(samples: Iterable[StereoSample], expected_layout: str, *, where: str | Path = "") -> None:
    """Check that every file a sample references exists, before any training starts.

    A dataset that is only partly unpacked should fail at setup with the full picture, not hours into an epoch.

    Args:
        samples: Samples to check.
        expected_layout: A description of the on-disk layout, quoted in the error to help fix the tree.
        where: The dataset root or list file the samples came from, quoted in the error.

    Raises:
        FileNotFoundError: Some files are missing; the message gives how many, the first few paths and
            ``expected_layout``.
    """
    missing: list[Path] = []
    total = 0
    for sample in samples:
        for file in (sample.left, sample.right, sample.disparity):
            if file is None:
                continue
            total += 1
            if not file.is_file():
                missing.append(file)
    if missing:
        shown = "\n  ".join(str(p) for p in missing[:_SHOW_MISSING])
        more = f"\n  ... and {len(missing) - _SHOW_MISSING} more" if len(missing) > _SHOW_MISSING else ""
        source = f" under {where}" if where else ""
        raise FileNotFoundError(
            f"{len(missing)} of {total} referenced files are missing{source}:\n  {shown}{more}\n"
            f"expected layout: {expected_layout}"
        )
