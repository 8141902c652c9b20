"""FADNet list files and the missing-file check."""

from __future__ import annotations

from pathlib import Path

import pytest

from lightning_hpml.datamodules.stereo.samples import StereoSample, check_samples_exist, read_list_file
from lightning_hpml.datamodules.stereo.sceneflow import sceneflow_sample_name


def test_list_file_space_and_tab_separated(tmp_path):
    lst = tmp_path / "train.list"
    lst.write_text(
        "# comment\n"
        "FlyingThings3D_release/frames_cleanpass/TEST/A/0000/left/0006.png "
        "FlyingThings3D_release/frames_cleanpass/TEST/A/0000/right/0006.png "
        "FlyingThings3D_release/disparity/TEST/A/0000/left/0006.pfm\n"
        "\n"
        "monkaa_release/frames_finalpass/eating_x2/left/0001.png\tmonkaa_release/frames_finalpass/eating_x2/right/0001.png"
        "\tmonkaa_release/disparity/eating_x2/left/0001.pfm\n"
    )
    samples = read_list_file(lst, tmp_path / "root", sceneflow_sample_name)
    assert len(samples) == 2
    first, second = samples
    assert first.left == tmp_path / "root/FlyingThings3D_release/frames_cleanpass/TEST/A/0000/left/0006.png"
    assert first.right == tmp_path / "root/FlyingThings3D_release/frames_cleanpass/TEST/A/0000/right/0006.png"
    assert first.disparity == tmp_path / "root/FlyingThings3D_release/disparity/TEST/A/0000/left/0006.pfm"
    assert first.name == "FlyingThings3D/TEST/A/0000/left/0006"
    assert second.name == "Monkaa/eating_x2/left/0001"
    assert second.disparity.name == "0001.pfm"


def test_list_file_default_names_and_unlabelled(tmp_path):
    lst = tmp_path / "test.list"
    lst.write_text("a/left/1.png a/right/1.png\nb/left/2.png b/right/2.png\n")
    samples = read_list_file(lst, tmp_path)
    assert [s.name for s in samples] == ["a/left/1", "b/left/2"]
    assert all(s.disparity is None for s in samples)


@pytest.mark.parametrize(
    ("content", "line"),
    [
        ("a.png b.png c.pfm\nonly_one_field.png\n", 2),
        ("a.png b.png c.pfm\n\n# x\na.png b.png c.pfm extra.png\n", 4),
    ],
)
def test_malformed_line_reports_file_and_line_number(tmp_path, content, line):
    lst = tmp_path / "bad.list"
    lst.write_text(content)
    with pytest.raises(ValueError, match=rf"bad\.list:{line}: expected 'left right disparity'"):
        read_list_file(lst, tmp_path)


def test_mixed_labelled_and_unlabelled_lines_are_refused(tmp_path):
    lst = tmp_path / "mixed.list"
    lst.write_text("a.png b.png c.pfm\nd.png e.png\n")
    with pytest.raises(ValueError, match=r"mixed\.list:2: .*line 1"):
        read_list_file(lst, tmp_path)


def test_empty_or_absent_list_file(tmp_path):
    (tmp_path / "empty.list").write_text("# nothing\n\n")
    with pytest.raises(ValueError, match="holds no sample"):
        read_list_file(tmp_path / "empty.list", tmp_path)
    with pytest.raises(FileNotFoundError, match=r"absent\.list"):
        read_list_file(tmp_path / "absent.list", tmp_path)


def test_check_samples_exist_counts_and_names_missing_files(tmp_path):
    samples = []
    for i in range(8):
        left, right, disp = (tmp_path / f"{kind}{i}.png" for kind in ("l", "r", "d"))
        left.touch()
        if i % 2 == 0:
            right.touch()
        disp.touch()
        samples.append(StereoSample(left, right, disp, f"s{i}"))
    with pytest.raises(FileNotFoundError) as err:
        check_samples_exist(samples, "<root>/left/*.png and <root>/right/*.png", where=tmp_path)
    message = str(err.value)
    assert "4 of 24 referenced files are missing" in message
    assert str(tmp_path / "r1.png") in message and "<root>/right/*.png" in message
    assert "and 0 more" not in message
    # All present: no error.
    check_samples_exist(samples[::2], "layout")
    check_samples_exist([StereoSample(Path(tmp_path / "l0.png"), tmp_path / "r0.png", None, "x")], "layout")
