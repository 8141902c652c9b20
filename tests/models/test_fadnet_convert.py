"""Loading official FADNet (ICRA 2020) checkpoints: key mapping, strict loading and error cases.

``data/fadnet_official_keys.json`` lists the state-dict keys and shapes of the official
``FADNet(batchNorm=False, lastRelu=True)`` (HKBU-HPML/FADNet ``main``), the model of the released ``fadnet.pth``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from lightning_hpml.modules.stereo.fadnet import FADNet, checkpoint_filter_fn

OFFICIAL = json.loads((Path(__file__).parent / "data" / "fadnet_official_keys.json").read_text())
OFFICIAL_SHAPES: dict[str, list[int]] = dict(OFFICIAL["keys"])


def meta_fadnet() -> FADNet:
    with torch.device("meta"):
        return FADNet()


def marked_state_dict(shapes: dict[str, list[int]]) -> dict[str, torch.Tensor]:
    """Official-named tensors where the i-th key holds the constant i (expanded views: no memory for 144M)."""
    out = {}
    for i, (key, shape) in enumerate(shapes.items()):
        dtype = torch.long if key.endswith("num_batches_tracked") else torch.float32
        out[key] = torch.tensor(i, dtype=dtype).expand(shape)
    return out


def official_to_ours() -> dict[str, str]:
    """Official key -> our key, read off the filter by passing the key names as values."""
    mapped = checkpoint_filter_fn({key: key for key in OFFICIAL_SHAPES})
    return {value: key for key, value in mapped.items()}


def test_fixture_describes_the_paper_model():
    params = sum(
        torch.Size(shape).numel()
        for key, shape in OFFICIAL_SHAPES.items()
        if not key.endswith(("running_mean", "running_var", "num_batches_tracked"))
    )
    assert params == OFFICIAL["num_parameters"] == 144_303_840
    assert len(OFFICIAL_SHAPES) == len(meta_fadnet().state_dict()) == 416


def test_every_official_tensor_lands_in_its_place():
    model = meta_fadnet()
    official = marked_state_dict(OFFICIAL_SHAPES)
    # As the official trainer saves it: DataParallel prefix inside a "state_dict" wrapper.
    checkpoint = {"epoch": 30, "state_dict": {f"module.{key}": value for key, value in official.items()}}
    mapped = checkpoint_filter_fn(checkpoint, model)
    result = model.load_state_dict(mapped, strict=True, assign=True)
    assert not result.missing_keys and not result.unexpected_keys
    ours = model.state_dict()
    names = official_to_ours()
    assert len(set(names.values())) == len(names) == len(ours)
    for i, key in enumerate(OFFICIAL_SHAPES):
        tensor = ours[names[key]]
        assert tensor.device.type == "cpu", key
        assert list(tensor.shape) == OFFICIAL_SHAPES[key], key
        assert torch.all(tensor == i), f"{key} -> {names[key]} holds the wrong tensor"


@pytest.mark.parametrize(
    ("official", "ours"),
    [
        ("dispnetc.conv1.0.weight", "dispnetc.conv1.0.weight"),
        ("dispnetc.conv_redir.shortcut.0.weight", "dispnetc.conv_redir.shortcut.0.weight"),
        ("dispnetc.conv3_1.bn2.running_var", "dispnetc.conv3_1.bn2.running_var"),
        ("dispnetc.conv4.shortcut.1.running_mean", "dispnetc.tail.conv4.shortcut.1.running_mean"),
        ("dispnetc.conv6_1.conv2.weight", "dispnetc.tail.conv6_1.conv2.weight"),
        ("dispnetc.pred_flow6.weight", "dispnetc.decoder.head6.weight"),
        ("dispnetc.upconv5.0.weight", "dispnetc.decoder.upconvs.0.0.weight"),
        ("dispnetc.upflow6to5.weight", "dispnetc.decoder.upsamplers.0.weight"),
        ("dispnetc.iconv5.bias", "dispnetc.decoder.iconvs.0.bias"),
        ("dispnetc.pred_flow5.weight", "dispnetc.decoder.heads.0.weight"),
        ("dispnetc.upflow3to2.weight", "dispnetc.decoder.upsamplers.3.weight"),
        ("dispnetc.upflow1to0.weight", "dispnetc.decoder.upsamplers.5.weight"),
        ("dispnetc.pred_flow0.weight", "dispnetc.decoder.heads.5.weight"),
        ("dispnetres.conv1.0.bias", "dispnetres.conv1.0.bias"),
        ("dispnetres.conv3_1.conv1.weight", "dispnetres.conv3_1.conv1.weight"),
        ("dispnetres.conv5.bn1.weight", "dispnetres.tail.conv5.bn1.weight"),
        ("dispnetres.pred_res6.weight", "dispnetres.decoder.head6.weight"),
        ("dispnetres.upflow2to1.weight", "dispnetres.decoder.upsamplers.4.weight"),
        ("dispnetres.upconv0.0.weight", "dispnetres.decoder.upconvs.5.0.weight"),
        ("dispnetres.iconv0.weight", "dispnetres.decoder.iconvs.5.weight"),
        ("dispnetres.pred_res2.weight", "dispnetres.decoder.heads.3.weight"),
    ],
)
def test_official_names_map_to_ours(official, ours):
    assert official_to_ours()[official] == ours


def test_unknown_official_key_raises_key_error_naming_it():
    official = marked_state_dict(OFFICIAL_SHAPES)
    official["dispnetc.disp_expand.conv1.weight"] = torch.zeros(1)  # maxdisp != -1 head: not FADNet's
    official["extra.weight"] = torch.zeros(1)
    with pytest.raises(KeyError, match=r"dispnetc\.disp_expand\.conv1\.weight.*extra\.weight"):
        checkpoint_filter_fn(official, meta_fadnet())


def test_missing_official_key_raises_key_error_naming_ours():
    official = marked_state_dict(OFFICIAL_SHAPES)
    del official["dispnetres.upflow4to3.weight"]
    with pytest.raises(KeyError, match=r"dispnetres\.decoder\.upsamplers\.2\.weight"):
        checkpoint_filter_fn({"state_dict": official}, meta_fadnet())


def test_batchnorm_checkpoint_is_rejected():
    """A ``batchNorm=True`` model has no conv1 bias and an extra BatchNorm: both differences are named."""
    official = marked_state_dict(OFFICIAL_SHAPES)
    del official["dispnetc.conv1.0.bias"]
    official["dispnetc.conv1.1.weight"] = torch.ones(64)
    with pytest.raises(KeyError, match=r"dispnetc\.conv1\.1\.weight.*dispnetc\.conv1\.0\.bias"):
        checkpoint_filter_fn(official)


def test_old_checkpoints_without_num_batches_tracked_load():
    official = {k: v for k, v in marked_state_dict(OFFICIAL_SHAPES).items() if not k.endswith("num_batches_tracked")}
    mapped = checkpoint_filter_fn(official, meta_fadnet())
    assert mapped["dispnetc.tail.conv4.bn1.num_batches_tracked"].item() == 0
    meta_fadnet().load_state_dict(mapped, strict=True, assign=True)


def test_wrong_shape_raises_value_error_naming_it():
    official = marked_state_dict(OFFICIAL_SHAPES)
    official["dispnetc.conv3_1.conv1.weight"] = torch.zeros(256, 64, 3, 3)  # conv3_1 of another correlation width
    with pytest.raises(ValueError, match=r"dispnetc\.conv3_1\.conv1\.weight: \(256, 64, 3, 3\) vs \(256, 72, 3, 3\)"):
        checkpoint_filter_fn(official, meta_fadnet())


def test_from_official_checkpoint_round_trip_at_tiny_width(tmp_path):
    """An official-format file (wrapper, ``module.`` prefix, official names) reproduces the source model."""
    torch.manual_seed(0)
    source = FADNet(width=0.0625).eval()
    state = source.state_dict()
    checkpoint = {"state_dict": {f"module.{off}": state[ours] for off, ours in official_to_ours().items()}}
    path = tmp_path / "fadnet.pth"
    torch.save(checkpoint, path)
    loaded = FADNet.from_official_checkpoint(path, width=0.0625).eval()
    left, right = torch.rand(2, 1, 3, 64, 128).unbind(0)
    with torch.no_grad():
        assert torch.equal(loaded(left, right)["disparity"], source(left, right)["disparity"])
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        FADNet.from_official_checkpoint(tmp_path / "missing.pth")
