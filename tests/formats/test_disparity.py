"""read_disparity/write_disparity: dispatch on suffix and PNG kind, the validity convention of each format, round
trips of (disparity, valid) through .pfm, .png and .exr, and errors for kinds no dataset uses."""

from __future__ import annotations

import struct
import tempfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

from lightning_hpml.datamodules.formats import (
    EXRFormatError,
    FormatError,
    PFMFormatError,
    read_disparity,
    read_exr_channels,
    write_disparity,
    write_exr,
    write_pfm,
    write_sintel_disparity,
)

shapes = st.tuples(st.integers(1, 8), st.integers(1, 8))


@settings(max_examples=60, deadline=None)
@given(
    codes=hnp.arrays(np.uint16, shapes, elements=st.integers(1, 65535)),
    valid=shapes.flatmap(lambda s: hnp.arrays(np.bool_, s)),
    suffix=st.sampled_from([".pfm", ".png", ".exr", ".PFM"]),
)
def test_round_trip_keeps_values_and_mask(codes: np.ndarray, valid: np.ndarray, suffix: str) -> None:
    valid = np.resize(valid, codes.shape)
    disp = codes.astype(np.float32) / 256  # on KITTI's grid, so every format is exact
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "scene" / f"0006{suffix}"
        write_disparity(path, disp, valid)
        back, back_valid = read_disparity(path)
    assert back.dtype == np.float32 and back_valid.dtype == np.bool_ and back.shape == disp.shape
    np.testing.assert_array_equal(back_valid, valid)
    np.testing.assert_array_equal(back[valid], disp[valid])


def test_pfm_with_inf_like_middlebury(tmp_path: Path) -> None:
    disp = np.array([[10.5, np.inf], [-3.0, 0.0]], dtype=np.float32)  # negative and zero stay valid in PFM
    write_pfm(tmp_path / "disp0GT.pfm", disp)
    back, valid = read_disparity(tmp_path / "disp0GT.pfm")
    np.testing.assert_array_equal(valid, [[True, False], [True, True]])
    np.testing.assert_array_equal(back, disp)


def test_kitti_png_is_detected_by_header(tmp_path: Path) -> None:
    path = tmp_path / "000000_10.png"
    cv2.imwrite(str(path), np.array([[0, 256, 1000]], dtype=np.uint16))
    disp, valid = read_disparity(path)
    np.testing.assert_array_equal(disp, [[0.0, 1.0, 1000 / 256]])
    np.testing.assert_array_equal(valid, [[False, True, True]])


def test_sintel_png_is_detected_by_header(tmp_path: Path) -> None:
    path = tmp_path / "frame_0001.png"
    write_sintel_disparity(path, np.array([[0.0, 12.25, 1000.5]]))
    disp, valid = read_disparity(path)
    np.testing.assert_array_equal(disp, [[0.0, 12.25, 1000.5]])
    np.testing.assert_array_equal(valid, [[False, True, True]])


def test_exr_nan_is_invalid(tmp_path: Path) -> None:
    # IRS's own single 'G' channel files are covered in test_exr.py.
    disp = np.array([[48.0, 4.8], [np.nan, 0.5]], dtype=np.float32)
    write_exr(tmp_path / "d_00001.exr", disp)
    back, valid = read_disparity(tmp_path / "d_00001.exr")
    np.testing.assert_array_equal(valid, [[True, True], [False, True]])
    np.testing.assert_array_equal(back[valid], disp[valid])


def test_write_disparity_exr_writes_one_channel(tmp_path: Path) -> None:
    write_disparity(tmp_path / "d.exr", np.ones((2, 2)))
    assert read_exr_channels(tmp_path / "d.exr") == {"Y": "FLOAT"}


def _expect(error: type[FormatError], path: Path, *fragments: str) -> None:
    with pytest.raises(error) as info:
        read_disparity(path)
    message = str(info.value)
    assert path.name in message
    for fragment in fragments:
        assert fragment in message


def test_three_channel_maps_are_refused(tmp_path: Path) -> None:
    write_pfm(tmp_path / "flow.pfm", np.zeros((2, 2, 3), dtype=np.float32))
    _expect(PFMFormatError, tmp_path / "flow.pfm", "3-channel")
    write_exr(tmp_path / "n_00001.exr", np.zeros((2, 2, 3), dtype=np.float32))
    _expect(EXRFormatError, tmp_path / "n_00001.exr", "single channel")


@pytest.mark.parametrize(
    ("array", "kind"),
    [
        (np.zeros((2, 2), dtype=np.uint8), "8-bit grey"),
        (np.zeros((2, 2, 4), dtype=np.uint8), "8-bit RGBA"),
    ],
)
def test_png_of_other_kinds_is_refused_with_the_accepted_kinds(tmp_path: Path, array: np.ndarray, kind: str) -> None:
    path = tmp_path / "mask.png"
    Image.fromarray(array).save(path)
    _expect(FormatError, path, kind, "KITTI", "Sintel")


def test_rgb16_png_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "rgb16.png"
    cv2.imwrite(str(path), np.zeros((2, 2, 3), dtype=np.uint16))
    _expect(FormatError, path, "16-bit RGB")


def test_non_png_named_png(tmp_path: Path) -> None:
    path = tmp_path / "fake.png"
    path.write_bytes(b"Pf\n1 1\n-1.0\n" + struct.pack("<f", 1.0))
    _expect(FormatError, path, "not a PNG")


def test_unknown_suffix_lists_accepted(tmp_path: Path) -> None:
    path = tmp_path / "disp.npy"
    np.save(path, np.zeros((2, 2)))
    _expect(FormatError, path, "'.npy'", ".pfm", ".png", ".exr")


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "disparity" / "0006.pfm"
    with pytest.raises(FileNotFoundError) as info:
        read_disparity(path)
    assert path.name in str(info.value)


def test_write_disparity_rejections(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"'\.npy'"):
        write_disparity(tmp_path / "d.npy", np.ones((2, 2)))
    with pytest.raises(ValueError, match="non-finite"):
        write_disparity(tmp_path / "d.pfm", np.array([[np.nan, 1.0]]), np.array([[True, True]]))
    with pytest.raises(ValueError, match="`valid`"):
        write_disparity(tmp_path / "d.exr", np.ones((2, 2)), np.ones((2, 3), dtype=bool))
    with pytest.raises(ValueError, match="`disp`"):
        write_disparity(tmp_path / "d.pfm", np.ones((2, 2, 3)))
    assert not any(tmp_path.iterdir())
