"""GPT-2 sizes and the nanoGPT-format token stream used as the strategies' workload."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from lightning_hpml.datamodules.text import TokenStreamDataModule, TokenWindows, write_markov_tokens
from lightning_hpml.modules import create_model, list_models


def test_gpt2_small_has_the_published_parameter_count_and_tied_output():
    with torch.device("meta"):
        model = create_model("gpt2_small")
    assert sum(p.numel() for p in model.parameters()) == 124_439_808  # GPT-2 small, tied embeddings
    assert model.lm_head.weight is model.wte.weight


def test_gpt2_forward_shape_causality_and_length_check():
    model = create_model("gpt2_tiny", max_len=16)
    tokens = torch.randint(0, 256, (2, 10))
    logits = model(tokens)
    assert logits.shape == (2, 10, 256)
    changed = tokens.clone()
    changed[:, 7] = (changed[:, 7] + 1) % 256
    torch.testing.assert_close(model(changed)[:, :7], logits[:, :7])  # the future does not leak into the past
    with pytest.raises(ValueError, match="exceeds max_len 16"):
        model(torch.zeros(1, 17, dtype=torch.long))


def test_model_families_are_listed_separately():
    assert "gpt2_tiny" in list_models(family="language") and "gpt2_tiny" not in list_models(family="stereo")
    assert "fadnet" in list_models(family="stereo")


def test_token_windows_read_the_uint16_file_and_reject_bad_files(tmp_path):
    path = write_markov_tokens(tmp_path / "train.bin", 1000, vocab_size=300, seed=0, sample_seed=1)
    raw = np.fromfile(path, dtype=np.uint16)
    windows = TokenWindows(path, seq_len=32, vocab_size=300)
    assert len(windows) == (1000 - 1) // 32
    assert windows[2]["tokens"].tolist() == raw[64:97].astype(np.int64).tolist()
    with pytest.raises(ValueError, match="token id .* >= vocab_size 100"):
        TokenWindows(path, seq_len=32, vocab_size=100)
    (tmp_path / "odd.bin").write_bytes(b"\x01\x02\x03")
    with pytest.raises(ValueError, match="odd.bin: size 3 B is odd"):
        TokenWindows(tmp_path / "odd.bin", seq_len=4)
    with pytest.raises(FileNotFoundError, match="missing.bin"):
        TokenWindows(tmp_path / "missing.bin", seq_len=4)


def test_synthetic_stream_is_learnable_and_splits_differ():
    data = TokenStreamDataModule(seq_len=16, vocab_size=64, batch_size=4, synthetic_tokens=4096)
    data.setup("fit")
    train = np.fromfile(data.root / "train.bin", dtype=np.uint16)
    val = np.fromfile(data.root / "val.bin", dtype=np.uint16)
    assert not np.array_equal(train[: len(val)], val)
    successors = {int(b) for a, b in itertools.pairwise(train) if a == train[0]}
    assert len(successors) <= 4  # each token has at most 4 successors: far below log(64) nats of entropy
    batch = next(iter(data.train_dataloader()))
    assert batch["tokens"].shape == (4, 17) and batch["tokens"].dtype == torch.int64
