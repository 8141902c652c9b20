"""FormatError carries the path, prefixes it to the message, survives pickling (DataLoader workers) and is a
ValueError, so one ``except`` catches every format problem."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from lightning_hpml.datamodules.formats import (
    EXRFormatError,
    FormatError,
    ImageFormatError,
    KittiDisparityFormatError,
    PFMFormatError,
    SintelDisparityFormatError,
)

SUBCLASSES = [PFMFormatError, KittiDisparityFormatError, SintelDisparityFormatError, EXRFormatError, ImageFormatError]


@pytest.mark.parametrize("cls", [FormatError, *SUBCLASSES])
def test_message_starts_with_path_and_pickles(cls: type[FormatError]) -> None:
    path = Path("/data/kitti/disp_occ_0/000000_10.png")
    err = cls(path, "is an 8-bit grey PNG")
    assert str(err) == f"{path}: is an 8-bit grey PNG"
    assert err.path == path and err.message == "is an 8-bit grey PNG"
    assert isinstance(err, ValueError) and isinstance(err, FormatError)
    clone = pickle.loads(pickle.dumps(err))
    assert type(clone) is cls and str(clone) == str(err) and clone.path == path


def test_subclasses_are_distinct() -> None:
    assert len(set(SUBCLASSES)) == len(SUBCLASSES)
    assert not issubclass(PFMFormatError, EXRFormatError)
