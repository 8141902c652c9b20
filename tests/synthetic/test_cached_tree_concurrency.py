"""DataModules that write a synthetic tree into the shared cache: concurrent ``prepare_data`` calls (two test
workers, or several jobs on one machine) must all end with the same complete tree, never a half-written one."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from lightning_hpml.datamodules.mvs.dtu import DTUDataModule
from lightning_hpml.datamodules.nerf.nerfbuster import NeRFBusterDataModule
from lightning_hpml.datamodules.panorama.datasets import Matterport3DDataModule
from lightning_hpml.datamodules.synthetic.cached_tree import SYNTHETIC_MARKER

MAKERS = {
    "dtu": lambda: DTUDataModule(num_views=3, synthetic_scans=(1, 2, 3), synthetic_views=3, synthetic_size=(32, 40)),
    "panorama": lambda: Matterport3DDataModule(synthetic_counts=(2, 1, 1), synthetic_size=(16, 32)),
    "nerfbuster": lambda: NeRFBusterDataModule(synthetic_frames=3, synthetic_size=(24, 32)),
}


@pytest.mark.parametrize("name", list(MAKERS))
def test_concurrent_prepare_data_leaves_one_complete_tree(name, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    modules = [MAKERS[name]() for _ in range(4)]
    with ThreadPoolExecutor(len(modules)) as pool:
        for future in [pool.submit(module.prepare_data) for module in modules]:
            future.result()  # re-raises a worker's error
    target = modules[0].data_root
    assert target.is_relative_to(tmp_path) and (target / SYNTHETIC_MARKER).is_file()
    assert [p.name for p in target.parent.iterdir()] == [target.name]  # no temporary folder left behind
    modules[-1].setup("fit")
