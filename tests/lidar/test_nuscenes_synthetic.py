"""The synthetic nuScenes writer: the devkit loads the tables, links and counts are consistent, data is deterministic."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

pytest.importorskip("nuscenes")

import itertools

from nuscenes.eval.detection.utils import category_to_detection_name
from nuscenes.nuscenes import NuScenes
from nuscenes.utils.data_classes import LidarPointCloud

from lightning_hpml.datamodules.formats.nuscenes import (
    GENERAL_TO_DETECTION,
    NUSCENES_CATEGORIES,
    NUSCENES_TABLES,
    read_lidar_bin,
)
from lightning_hpml.datamodules.synthetic.nuscenes_writer import (
    SYNTHETIC_TRAIN_SPLIT,
    SYNTHETIC_VAL_SPLIT,
    write_nuscenes,
)

OPTIONS = {"num_scenes": 2, "keyframes_per_scene": 3, "sweeps_per_keyframe": 2, "azimuth_steps": 512}


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("nus") / "tree"
    start = time.perf_counter()
    write_nuscenes(root, seed=3, **OPTIONS)
    return root, time.perf_counter() - start


def test_devkit_loads_tables_and_counts_match(tree):
    root, seconds = tree
    nusc = NuScenes(version="v1.0-mini", dataroot=str(root), verbose=False)
    scans = OPTIONS["num_scenes"] * (OPTIONS["keyframes_per_scene"] + 2 * (OPTIONS["keyframes_per_scene"] - 1))
    assert seconds / scans < 1.0  # generation well under a second per scan
    assert len(nusc.scene) == 2 and len(nusc.sample) == 6
    assert len(nusc.sample_data) == len(nusc.ego_pose) == scans
    assert sum(sd["is_key_frame"] for sd in nusc.sample_data) == 6
    assert len(nusc.category) == 23 and len(nusc.attribute) == 8 and len(nusc.visibility) == 4
    for name in NUSCENES_TABLES:
        assert (root / "v1.0-mini" / f"{name}.json").is_file()
    splits = json.loads((root / "v1.0-mini" / "splits.json").read_text())
    assert splits == {SYNTHETIC_TRAIN_SPLIT: ["synthetic-0001"], SYNTHETIC_VAL_SPLIT: ["synthetic-0002"]}
    assert len(list((root / "samples" / "LIDAR_TOP").iterdir())) == 6
    assert len(list((root / "sweeps" / "LIDAR_TOP").iterdir())) == scans - 6


def test_links_chains_and_annotations_are_consistent(tree):
    root, _ = tree
    nusc = NuScenes(version="v1.0-mini", dataroot=str(root), verbose=False)
    for scene in nusc.scene:
        chain, token = [], scene["first_sample_token"]
        while token:
            chain.append(nusc.get("sample", token))
            token = chain[-1]["next"]
        assert len(chain) == scene["nbr_samples"] and chain[-1]["token"] == scene["last_sample_token"]
        assert all(b["prev"] == a["token"] for a, b in itertools.pairwise(chain))
        assert all(
            b["timestamp"] - a["timestamp"] == 500_000 for a, b in itertools.pairwise(chain)
        )  # 2 Hz, microseconds
        # LiDAR chain: keyframes with two sweeps in between, each sweep owned by the next keyframe's sample.
        sd = nusc.get("sample_data", chain[-1]["data"]["LIDAR_TOP"])
        seen = [sd]
        while sd["prev"]:
            sd = nusc.get("sample_data", sd["prev"])
            seen.append(sd)
        assert [s["is_key_frame"] for s in seen[::-1]] == [True, False, False, True, False, False, True]
        assert all(s["fileformat"] == "pcd" and s["filename"].endswith(".pcd.bin") for s in seen)
        assert seen[1]["sample_token"] == chain[-1]["token"]
    for instance in nusc.instance:
        anns, token = [], instance["first_annotation_token"]
        while token:
            anns.append(nusc.get("sample_annotation", token))
            token = anns[-1]["next"]
        assert len(anns) == instance["nbr_annotations"] and anns[-1]["token"] == instance["last_annotation_token"]
    for ann in nusc.sample_annotation:
        assert ann["num_radar_pts"] == 0 and ann["num_lidar_pts"] >= 0 and len(ann["size"]) == 3
        assert ann["visibility_token"] in {"1", "2", "3", "4"} and len(ann["attribute_tokens"]) <= 1
    names = {nusc.get("sample_annotation", t)["category_name"] for s in nusc.sample for t in s["anns"]}
    assert {"vehicle.car", "human.pedestrian.adult", "movable_object.trafficcone", "vehicle.bus.rigid"} <= names


def test_every_detection_class_has_points_in_each_scene(tree):
    root, _ = tree
    nusc = NuScenes(version="v1.0-mini", dataroot=str(root), verbose=False)
    for scene in nusc.scene:
        seen = set()
        for sample in (s for s in nusc.sample if s["scene_token"] == scene["token"]):
            for token in sample["anns"]:
                ann = nusc.get("sample_annotation", token)
                if ann["num_lidar_pts"] > 0 and category_to_detection_name(ann["category_name"]):
                    seen.add(category_to_detection_name(ann["category_name"]))
        assert len(seen) == 10, (scene["name"], seen)


def test_scans_and_devkit_point_cloud_readers(tree):
    root, _ = tree
    nusc = NuScenes(version="v1.0-mini", dataroot=str(root), verbose=False)
    sample = nusc.sample[2]
    path = nusc.get_sample_data_path(sample["data"]["LIDAR_TOP"])
    points = read_lidar_bin(path)
    assert points.shape[1] == 5 and len(points) > 5000
    rings = points[:, 4]
    assert np.array_equal(rings, np.round(rings)) and rings.min() >= 0 and rings.max() <= 31
    assert 0 <= points[:, 3].min() and points[:, 3].max() <= 255
    cloud = LidarPointCloud.from_file(path)  # the devkit's reader on numpy 2
    np.testing.assert_array_equal(cloud.points.T, points[:, :4])
    merged, times = LidarPointCloud.from_file_multisweep(nusc, sample, "LIDAR_TOP", "LIDAR_TOP", nsweeps=10)
    np.testing.assert_allclose(np.unique(times.round(6)), [0.0, 1 / 6, 1 / 3, 0.5, 2 / 3, 5 / 6, 1.0], atol=1e-6)
    assert merged.points.shape[1] == times.shape[1] > 3 * len(points)


def test_writer_is_deterministic_and_checks_arguments(tree, tmp_path):
    root, _ = tree
    again = write_nuscenes(tmp_path / "again", seed=3, **OPTIONS)
    for name in ("sample_annotation", "ego_pose", "sample_data"):
        assert (again / "v1.0-mini" / f"{name}.json").read_text() == (root / "v1.0-mini" / f"{name}.json").read_text()
    first = min((root / "samples" / "LIDAR_TOP").iterdir())
    assert (again / "samples" / "LIDAR_TOP" / first.name).read_bytes() == first.read_bytes()
    with pytest.raises(ValueError, match="num_val_scenes"):
        write_nuscenes(tmp_path / "bad", num_scenes=1)
    with pytest.raises(FileExistsError, match="not empty"):
        write_nuscenes(again, seed=3, **OPTIONS)


def test_category_mapping_matches_the_devkit():
    for name in NUSCENES_CATEGORIES:
        assert GENERAL_TO_DETECTION.get(name) == category_to_detection_name(name), name
    assert len(NUSCENES_CATEGORIES) == 23 and len(set(GENERAL_TO_DETECTION.values())) == 10
