"""Token streams for language-model workloads, in nanoGPT's on-disk format.

``root/train.bin`` and ``root/val.bin`` hold GPT-2 BPE token ids as a flat little-endian uint16 array (the format
nanoGPT's ``prepare.py`` scripts write for OpenWebText and Shakespeare). Samples are windows of ``seq_len + 1``
tokens at fixed offsets (``seq_len`` apart), so an epoch is deterministic and resumable. ``root=None`` writes a
synthetic stream first: tokens from a fixed random first-order Markov chain with a few likely successors per token,
so a model can actually learn it (its entropy is far below ``log(vocab_size)``).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

__all__ = ["TokenStreamDataModule", "TokenWindows", "write_markov_tokens"]


def write_markov_tokens(
    path: Path, n_tokens: int, vocab_size: int, seed: int, sample_seed: int, successors: int = 4
) -> Path:
    """Write ``n_tokens`` uint16 ids to ``path``: a walk (``sample_seed``) on the Markov chain ``seed`` defines."""
    if not 2 <= vocab_size <= 65536:
        raise ValueError(f"`vocab_size` must be in [2, 65536] for uint16 storage, got {vocab_size}")
    table = np.random.default_rng(seed).integers(0, vocab_size, size=(vocab_size, successors))
    choices = np.random.default_rng(sample_seed).integers(0, successors, size=n_tokens)
    tokens = np.empty(n_tokens, dtype=np.uint16)
    current = 0
    for i in range(n_tokens):
        current = table[current, choices[i]]
        tokens[i] = current
    path.parent.mkdir(parents=True, exist_ok=True)
    tokens.tofile(path)
    return path


class TokenWindows(Dataset):
    """Fixed windows of a uint16 token file; item ``i`` is ``{"tokens": ids[i*T : i*T + T + 1]}``."""

    def __init__(self, path: str | Path, seq_len: int, vocab_size: int | None = None) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"token file not found: {self.path} (expected nanoGPT-style uint16 .bin)")
        if self.path.stat().st_size % 2:
            raise ValueError(f"{self.path}: size {self.path.stat().st_size} B is odd; expected uint16 token ids")
        self.tokens = np.memmap(self.path, dtype=np.uint16, mode="r")
        self.seq_len = seq_len
        if len(self.tokens) < seq_len + 1:
            raise ValueError(f"{self.path}: {len(self.tokens)} tokens, fewer than one window of {seq_len + 1}")
        if vocab_size is not None and int(self.tokens.max()) >= vocab_size:
            raise ValueError(f"{self.path}: token id {int(self.tokens.max())} >= vocab_size {vocab_size}")

    def __len__(self) -> int:
        return (len(self.tokens) - 1) // self.seq_len

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        start = index * self.seq_len
        window = np.asarray(self.tokens[start : start + self.seq_len + 1], dtype=np.int64)
        return {"tokens": torch.from_numpy(window)}


class TokenStreamDataModule(L.LightningDataModule):
    """Args:
    root: Folder with ``train.bin``/``val.bin``; ``None`` writes a synthetic Markov stream to a temporary folder.
    seq_len: Tokens per sample (the model sees ``seq_len`` inputs and predicts ``seq_len`` targets).
    vocab_size: Checked against the files; the synthetic stream's vocabulary.
    batch_size, num_workers, shuffle: DataLoader settings (shuffle with Lightning's distributed sampler).
    synthetic_tokens: Length of each synthetic split (train; val gets a quarter).
    """

    def __init__(
        self,
        root: str | None = None,
        seq_len: int = 64,
        vocab_size: int = 256,
        batch_size: int = 8,
        num_workers: int = 0,
        shuffle: bool = False,
        synthetic_tokens: int = 65536,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.root = Path(root) if root is not None else None
        self.seq_len = seq_len
        self.vocab_size = vocab_size
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.shuffle = shuffle
        self.synthetic_tokens = synthetic_tokens
        self.seed = seed
        self._tmp: tempfile.TemporaryDirectory | None = None

    def prepare_data(self) -> None:
        pass

    def setup(self, stage: str) -> None:
        if self.root is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="hpml-tokens-")
            self.root = Path(self._tmp.name)
            chain = (self.vocab_size, self.seed)
            write_markov_tokens(self.root / "train.bin", self.synthetic_tokens, *chain, sample_seed=self.seed + 1)
            write_markov_tokens(self.root / "val.bin", self.synthetic_tokens // 4, *chain, sample_seed=self.seed + 2)
        self.train_set = TokenWindows(self.root / "train.bin", self.seq_len, self.vocab_size)
        self.val_set = TokenWindows(self.root / "val.bin", self.seq_len, self.vocab_size)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(
            self.train_set, self.batch_size, shuffle=self.shuffle, num_workers=self.num_workers, drop_last=True
        )

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, self.batch_size, num_workers=self.num_workers)
