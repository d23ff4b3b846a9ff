import pytest
import torch

from latentnlp.training.checkpoint import (
    CheckpointError,
    atomic_save_tensors,
    flatten_optimizer_state,
    load_tensors,
    unflatten_optimizer_state,
)


def test_round_trip_with_metadata_and_no_temp_files(tmp_path):
    path = tmp_path / "ck.safetensors"
    tensors = {"a": torch.arange(6.0).reshape(2, 3), "b": torch.tensor([1, 2], dtype=torch.int64)}
    atomic_save_tensors(path, tensors, {"epoch": 3, "history": [{"x": 1.5}]})
    loaded, meta = load_tensors(path)
    assert meta == {"epoch": 3, "history": [{"x": 1.5}]}
    for k in tensors:
        assert torch.equal(loaded[k], tensors[k])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck.safetensors"]


def test_overwrite_is_atomic_replacement(tmp_path):
    path = tmp_path / "ck.safetensors"
    atomic_save_tensors(path, {"a": torch.zeros(2)}, {"epoch": 1})
    atomic_save_tensors(path, {"a": torch.ones(2)}, {"epoch": 2})
    loaded, meta = load_tensors(path)
    assert meta["epoch"] == 2 and torch.equal(loaded["a"], torch.ones(2))


def test_truncated_or_missing_file_raises(tmp_path):
    path = tmp_path / "ck.safetensors"
    atomic_save_tensors(path, {"a": torch.zeros(100)}, {})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="ck.safetensors"):
        load_tensors(path)
    with pytest.raises(FileNotFoundError, match="nothing.safetensors"):
        load_tensors(tmp_path / "nothing.safetensors")


def test_optimizer_state_round_trip():
    p = torch.nn.Parameter(torch.randn(3))
    opt = torch.optim.Adam([p], lr=0.1)
    for _ in range(3):
        opt.zero_grad()
        (p**2).sum().backward()
        opt.step()
    tensors, meta = flatten_optimizer_state(opt.state_dict(), "optim.x")
    restored = unflatten_optimizer_state(tensors, meta, "optim.x")
    opt2 = torch.optim.Adam([torch.nn.Parameter(p.detach().clone())], lr=0.5)
    opt2.load_state_dict(restored)
    s1, s2 = opt.state_dict(), opt2.state_dict()
    assert s2["param_groups"][0]["lr"] == 0.1
    for k in ("exp_avg", "exp_avg_sq", "step"):
        assert torch.equal(s1["state"][0][k], s2["state"][0][k])
