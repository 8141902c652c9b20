"""CF-NeRF's incremental schedule: which images, parameters and resolution each optimisation step uses.

From the official ``train_iter_pose.py`` (see the reference notes, section 3.3). A stage "epoch" is one pass over its
views with one step (one batch of rays from one view) per view:

1. ``init``: the first ``init_views`` images for ``init_epochs`` epochs (views shuffled), optimising the NeRF, the
   focal, the translations and (``init_rotation=True``, our default) the rotations. The official code does not step
   the rotation optimiser here, so the first images keep identity rotations until the next stages; that only suits
   nearly parallel first views (``init_rotation=False`` reproduces it). With ``init_candidates`` K > 1 (ours, not
   in the official code) the stage runs K times from differently seeded fields and identity cameras, and the
   candidate that renders the first images best is kept (see :class:`~lightning_hpml.modules.nerf.CFNeRFModule`).
2. For each further image ``i``: ``local`` ("implicit localisation") - image ``i`` starts at the pose of image
   ``i - 1`` and only its rotation and translation are optimised, NeRF frozen, ``epochs`` steps; ``part`` - NeRF and
   poses of the last ``part_views`` images, ``epochs`` epochs; ``global`` ("implicit optimisation") - NeRF, focal and
   all registered poses, ``epochs`` epochs, after every ``global_every``-th registered image and after the last one.
3. ``refine``: a ``global`` stage at each of ``refine_levels`` (coarse to fine image pyramid levels).

Stages are a pure function of the settings, and a step's place is found from the global step alone, so a resumed
run continues exactly where it stopped.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

import torch

__all__ = ["IncrementalSchedule", "Stage"]


@dataclass(frozen=True)
class Stage:
    name: str
    views: tuple[int, ...]
    epochs: int
    level: int
    nerf: bool
    focal: bool
    rotation: bool
    translation: bool
    register: int | None = None  # image whose pose starts from the previous image's at the start of the stage
    candidate: int | None = None  # which initialisation candidate an ``init`` stage trains
    shuffle: bool = True

    @property
    def steps(self) -> int:
        return self.epochs * len(self.views)


class IncrementalSchedule:
    """Args:
    num_images: Length of the image sequence.
    level: Pyramid level of the incremental stages.
    init_views, init_epochs, epochs, part_views, global_every: As in the module docstring (official: 3, 3000,
        600 or 900, 3, 5 or 10).
    refine_levels: Pyramid levels of the final global stages (official scripts: 2, 1, 0).
    init_rotation: Optimise rotations during ``init`` (the official code does not).
    init_candidates: Repeat ``init`` this many times from fresh starts (1: the official single initialisation).
    """

    def __init__(
        self,
        num_images: int,
        level: int = 0,
        init_views: int = 3,
        init_epochs: int = 3000,
        epochs: int = 600,
        part_views: int = 3,
        global_every: int = 5,
        refine_levels: tuple[int, ...] = (),
        init_rotation: bool = True,
        init_candidates: int = 1,
    ) -> None:
        if num_images < init_views:
            raise ValueError(f"need at least init_views = {init_views} images, got {num_images}")
        if init_candidates < 1:
            raise ValueError(f"init_candidates must be at least 1, got {init_candidates}")
        views = tuple(range(init_views))
        stages = [
            Stage("init", views, init_epochs, level, True, True, init_rotation, True, candidate=candidate)
            for candidate in range(init_candidates)
        ]
        for i in range(init_views, num_images):
            stages.append(Stage("local", (i,), epochs, level, False, False, True, True, register=i))
            stages.append(Stage("part", tuple(range(max(0, i - part_views + 1), i + 1)), epochs, level, True, False,
                                True, True))  # fmt: skip
            if (i + 1) % global_every == 0 or i == num_images - 1:
                stages.append(Stage("global", tuple(range(i + 1)), epochs, level, True, True, True, True))
        for refine_level in refine_levels:
            stages.append(Stage("refine", tuple(range(num_images)), epochs, refine_level, True, True, True, True))
        self.stages = stages
        self._starts = [0]
        for stage in stages:
            self._starts.append(self._starts[-1] + stage.steps)

    @property
    def total_steps(self) -> int:
        return self._starts[-1]

    def locate(self, step: int) -> tuple[int, Stage, int, int]:
        """``(stage_index, stage, step_in_stage, view)`` of a global step."""
        if not 0 <= step < self.total_steps:
            raise IndexError(f"step {step} is outside the schedule's {self.total_steps} steps")
        index = bisect.bisect_right(self._starts, step) - 1
        stage, within = self.stages[index], step - self._starts[index]
        epoch, position = divmod(within, len(stage.views))
        order = list(range(len(stage.views)))
        if stage.shuffle:
            generator = torch.Generator().manual_seed(index * 1_000_003 + epoch)
            order = torch.randperm(len(stage.views), generator=generator).tolist()
        return index, stage, within, stage.views[order[position]]

    def registered(self, step: int) -> int:
        """How many images have a pose being estimated at ``step`` (the rest are not in the model yet)."""
        _, stage, _, _ = self.locate(min(step, self.total_steps - 1))
        return max(stage.views) + 1
