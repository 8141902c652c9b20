"""Procedural generators that write small stereo datasets in the real on-disk formats.

Tests, the demo and the notebooks need data without downloads, and the loaders must read it through the same code
path as the real datasets. So the pairs are rendered from known 3-D geometry (exact disparity, real occlusions;
:mod:`.stereo_scene`) and written as a Scene Flow tree (:mod:`.sceneflow_writer`) or a KITTI 2012/2015 tree
(:mod:`.kitti_writer`). Every tree carries a ``SYNTHETIC_README.txt`` naming the generator and its parameters.
"""

from lightning_hpml.datamodules.synthetic.irs_writer import write_irs
from lightning_hpml.datamodules.synthetic.kitti_writer import write_kitti_stereo
from lightning_hpml.datamodules.synthetic.sceneflow_writer import write_sceneflow
from lightning_hpml.datamodules.synthetic.sintel_writer import write_sintel_stereo
from lightning_hpml.datamodules.synthetic.stereo_scene import (
    Patch,
    StereoRender,
    StereoRig,
    StereoScene,
    random_scene,
    render_scene,
    render_stereo_pair,
)

__all__ = [
    "Patch",
    "StereoRender",
    "StereoRig",
    "StereoScene",
    "random_scene",
    "render_scene",
    "render_stereo_pair",
    "write_irs",
    "write_kitti_stereo",
    "write_sceneflow",
    "write_sintel_stereo",
]
