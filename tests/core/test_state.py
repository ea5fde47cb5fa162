"""MemoryState: bad states and bad files get a ValueError naming the field or the path."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from titans_memory.core import MemoryConfig, MemoryState, NeuralMemory

DT = torch.float64


@pytest.fixture
def mem_and_state():
    torch.manual_seed(0)
    mem = NeuralMemory(MemoryConfig(dim=8, heads=2, chunk_size=4)).to(DT)
    with torch.no_grad():
        _, state = mem(torch.randn(2, 6, 8, dtype=DT))
    return mem, state


def _saved(state: MemoryState, path: Path, **meta_changes) -> dict:
    """The tensors and metadata :meth:`MemoryState.save` writes, with changes."""
    state.save(path)
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = dict(f.metadata())
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    meta.update({k: v for k, v in meta_changes.items() if v is not None})
    for k, v in meta_changes.items():
        if v is None:
            meta.pop(k)
    return tensors, meta


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
@pytest.mark.parametrize("field", ["weights", "momentum", "anchor", "query_tail", "kv_tail"])
def test_a_non_finite_state_is_refused_by_forward_and_load(mem_and_state, tmp_path, field, bad):
    mem, state = mem_and_state
    if field in ("query_tail", "kv_tail"):
        t = getattr(state, field).clone()
        t[0, 0, 0] = bad
        broken = state.replace(**{field: t})
        name = field
    else:
        group = list(getattr(state, field))
        group[1] = group[1].clone()
        group[1][0, 0, 0, 0] = bad
        broken = state.replace(**{field: tuple(group)})
        name = f"{field}.1"
    with pytest.raises(ValueError, match=rf"^MemoryState\.{name} contains NaN or Inf$"):
        mem(torch.randn(2, 3, 8, dtype=DT), broken)
    broken.save(tmp_path / "s.safetensors")  # saving is allowed (to inspect it), loading is not
    with pytest.raises(ValueError, match=rf"^MemoryState\.{name} contains NaN or Inf$"):
        MemoryState.load(tmp_path / "s.safetensors")
    # the check is switchable: off, the call runs (and the NaN spreads, as documented)
    mem.check_finite = False
    y, _ = mem(torch.randn(2, 3, 8, dtype=DT), broken)
    assert not torch.isfinite(y).all()


def test_negative_position_and_bad_chunk_size(mem_and_state):
    mem, state = mem_and_state
    with pytest.raises(ValueError, match=r"^MemoryState.position must be >= 0, got -3$"):
        mem(torch.randn(2, 3, 8, dtype=DT), state.replace(position=-3))
    with pytest.raises(ValueError, match=r"^MemoryState.position must be an integer, got 2.0$"):
        state.replace(position=2.0).validate()
    with pytest.raises(ValueError, match=r"^MemoryState.chunk_size must be >= 1, got 0$"):
        state.replace(chunk_size=0).validate()
    with pytest.raises(ValueError, match=r"^MemoryState.momentum has shapes .* but weights has"):
        state.replace(momentum=state.momentum[:1]).validate()


def test_load_refuses_directories_and_missing_files(tmp_path):
    with pytest.raises(ValueError, match=r"cannot load a MemoryState from .*: it is a directory"):
        MemoryState.load(tmp_path)
    with pytest.raises(ValueError, match=r"cannot load a MemoryState from .*nothing.safetensors': it is not a file"):
        MemoryState.load(tmp_path / "nothing.safetensors")


def test_load_refuses_a_truncated_file(mem_and_state, tmp_path):
    _, state = mem_and_state
    path = tmp_path / "s.safetensors"
    state.save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"s.safetensors' is not a readable safetensors file"):
        MemoryState.load(path)
    path.write_bytes(b"not a safetensors file at all")
    with pytest.raises(ValueError, match=r"s.safetensors' is not a readable safetensors file"):
        MemoryState.load(path)


@pytest.mark.parametrize(
    ("meta", "pattern"),
    [
        ({"layers": None}, r"the MemoryState field 'layers' is missing"),
        ({"position": None}, r"the MemoryState field 'position' is missing"),
        ({"position": "ten"}, r"the MemoryState field 'position' must be an integer, got 'ten'"),
        ({"position": "-1"}, r"the MemoryState field 'position' must be >= 0, got -1"),
        ({"chunk_size": "0"}, r"the MemoryState field 'chunk_size' must be >= 1, got 0"),
        ({"layers": "3"}, r"the MemoryState tensor 'weights.2' is missing"),
    ],
)
def test_load_names_a_missing_or_wrong_field(mem_and_state, tmp_path, meta, pattern):
    _, state = mem_and_state
    tensors, metadata = _saved(state, tmp_path / "orig.safetensors", **meta)
    save_file(tensors, str(tmp_path / "bad.safetensors"), metadata=metadata)
    with pytest.raises(ValueError, match=pattern):
        MemoryState.load(tmp_path / "bad.safetensors")


def test_load_names_a_missing_tensor_and_inconsistent_shapes(mem_and_state, tmp_path):
    _, state = mem_and_state
    tensors, metadata = _saved(state, tmp_path / "orig.safetensors")
    for name, change, pattern in (
        ("anchor.0", None, r"the MemoryState tensor 'anchor.0' is missing"),
        ("momentum.1", torch.zeros(2, 2, 3, 3, dtype=DT), r"MemoryState.momentum has shapes"),
    ):
        broken = dict(tensors)
        if change is None:
            broken.pop(name)
        else:
            broken[name] = change
        save_file(broken, str(tmp_path / "bad.safetensors"), metadata=metadata)
        with pytest.raises(ValueError, match=pattern):
            MemoryState.load(tmp_path / "bad.safetensors")


def test_save_names_the_target_path(mem_and_state, tmp_path):
    _, state = mem_and_state
    target = tmp_path / "missing" / "dir" / "s.safetensors"
    with pytest.raises(ValueError, match=r"cannot save the state to .*s.safetensors': the directory .*dir' does not exist"):
        state.save(target)
    with pytest.raises(ValueError, match=r"cannot save the state to .*: it is a directory"):
        state.save(tmp_path)


def test_format_2_loads_and_stray_tensors_are_named(mem_and_state, tmp_path):
    """Format 3 adds the carried tensors; a format-2 file (none) still loads and continues the
    stream exactly; a tensor the format does not know is named."""
    mem, state = mem_and_state
    assert state.carried == {}
    tensors, metadata = _saved(state, tmp_path / "orig.safetensors")
    assert metadata["format"] == "titans-miras/MemoryState/3"
    save_file(tensors, str(tmp_path / "v2.safetensors"), metadata={**metadata, "format": "titans-miras/MemoryState/2"})
    old = MemoryState.load(tmp_path / "v2.safetensors")
    assert old.carried == {}
    x = torch.randn(2, 5, 8, dtype=DT)
    with torch.no_grad():
        torch.testing.assert_close(mem(x, old)[0], mem(x, state)[0], rtol=0, atol=0)
    for fmt, name in (("3", "stray"), ("2", "carried.tail")):
        save_file({**tensors, name: torch.zeros(2, 2, dtype=DT)}, str(tmp_path / "bad.safetensors"),
                  metadata={**metadata, "format": f"titans-miras/MemoryState/{fmt}"})
        with pytest.raises(ValueError, match=rf"unexpected tensors \['{name}'\] in a MemoryState file"):
            MemoryState.load(tmp_path / "bad.safetensors")
    save_file({**tensors, "carried.tail": torch.zeros(2, 3, dtype=DT)}, str(tmp_path / "odd.safetensors"), metadata=metadata)
    with pytest.raises(ValueError, match=r"MemoryState.carried\['tail'\] must be \(batch=2, heads=2, ...\), got \(2, 3\)"):
        MemoryState.load(tmp_path / "odd.safetensors")
