"""Find, without a GPU, the ops that make the host wait for the GPU (test helper).

`SyncTracer` is a TorchDispatchMode that names each op which synchronises host and device on CUDA,
with the lines of clsp code that called it:

- host reads of device values: `aten._local_scalar_dense` (`.item()`, `bool(t)`, `int(t)`, `.tolist()`),
  `aten.equal`, `aten.is_nonzero`;
- ops whose output size depends on the data, so the host must learn it: `nonzero`, `masked_select`,
  `unique*`, `bincount`, `repeat_interleave` without `output_size`, and indexing or `index_put_`
  with a boolean mask;
- blocking host-to-device copies (CUDA copies pageable memory with a stream synchronise): `.to(device)`
  or `copy_` of a CPU tensor onto the device, and any op that mixes a CPU tensor with more than one
  element into device work (indexing a device tensor with a CPU index), which copies it that way.

Run on the CPU alone (`device="cpu"`), the CPU is both host and device: every op of the first two kinds
is flagged, including host-side work that would never touch a GPU, and copies cannot show. The faithful
run uses a second device: with `meta_device()`, "meta" stands in for CUDA (tensors with shapes and no
data), code moved there with `.to("meta")` takes its accelerator paths, CPU tensors are the host's (free
to read), and every host tensor that meets device work is an upload the tracer sees. Data-dependent ops
cannot run on meta: the tracer records them and raises `SyncFound`.
"""

from __future__ import annotations

import contextlib
import traceback

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

aten = torch.ops.aten

# Ops that sync whatever their arguments (the op packet: every overload).
_ALWAYS = {
    aten._local_scalar_dense: "reads a device value on the host (.item(), bool(), int(), .tolist())",
    aten.equal: "returns a host bool",
    aten.is_nonzero: "returns a host bool",
    aten.nonzero: "output size depends on the data",
    aten.masked_select: "output size depends on the data",
    aten.unique_consecutive: "output size depends on the data",
    aten.unique_dim: "output size depends on the data",
    aten._unique: "output size depends on the data",
    aten._unique2: "output size depends on the data",
    aten.bincount: "output size depends on the data",
}


class SyncFound(RuntimeError):
    """A syncing op that cannot run on the meta device (its output depends on data meta does not hold)."""


def _where(skip: int = 2) -> str:
    """The innermost few frames of non-torch code that led to the op."""
    frames = [f for f in traceback.extract_stack()[:-skip] if "/torch/" not in f.filename
              and "sync_tracer" not in f.filename]
    return " <- ".join(f"{f.filename.rsplit('/', 2)[-1]}:{f.lineno}" for f in frames[-4:][::-1])


def _is_host_tensor(x) -> bool:
    return isinstance(x, torch.Tensor) and x.device.type == "cpu"


def _reason(func, args, kwargs, host_is_free: bool) -> str | None:
    """Why `func(*args, **kwargs)` syncs on CUDA, or None. `host_is_free`: ops on CPU tensors alone are
    host work (the device is another one)."""
    packet = func.overloadpacket
    tensors = [t for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)]
    on_device = [t for t in tensors if t.device.type != "cpu"]
    if packet in (aten._to_copy, aten.copy_):
        src, dst = (args[0], kwargs.get("device")) if packet is aten._to_copy else (args[1], args[0].device)
        non_blocking = kwargs.get("non_blocking", args[2] if packet is aten.copy_ and len(args) > 2 else False)
        if _is_host_tensor(src) and dst is not None and torch.device(dst).type != "cpu" and not non_blocking:
            return "blocking host-to-device copy"
        return None
    if host_is_free and not on_device:
        return None
    if packet in _ALWAYS:
        return _ALWAYS[packet]
    if packet is aten.repeat_interleave and kwargs.get("output_size") is None and len(args) < 4 and \
            isinstance(args[0], torch.Tensor) and (len(args) < 2 or isinstance(args[1], torch.Tensor)):
        return "repeat_interleave without output_size: output size depends on the data"
    if packet in (aten.index, aten.index_put, aten._index_put_impl_) and len(args) > 1:
        if any(isinstance(i, torch.Tensor) and i.dtype in (torch.bool, torch.uint8) for i in args[1]):
            return "boolean-mask indexing: output size depends on the data"
    if on_device and any(_is_host_tensor(t) and t.dim() > 0 for t in tensors):
        return "a host tensor in device work: copied to the device first (blocking)"
    return None


class SyncTracer(TorchDispatchMode):
    """Records each syncing op as "op: why @ where".

    `device`: the device standing in for the GPU ("cpu": everything counts; "meta": CPU work is the
    host's). `allowed`: data_ptrs of CPU tensors whose reads are known host reads (e.g. the optimizer's
    `step` counters)."""

    def __init__(self, device: str = "meta", allowed: set[int] | None = None):
        super().__init__()
        self.host_is_free = torch.device(device).type != "cpu"
        self.allowed = allowed or set()
        self.syncs: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        reason = _reason(func, args, kwargs, self.host_is_free)
        if reason is not None and not (args and isinstance(args[0], torch.Tensor)
                                       and args[0].data_ptr() in self.allowed and args[0].device.type == "cpu"):
            self.syncs.append(f"{func.overloadpacket.__name__}: {reason} @ {_where()}")
            on_meta = any(t.device.type == "meta" for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor))
            if on_meta and func.overloadpacket in _ALWAYS:
                raise SyncFound(self.syncs[-1])
        return func(*args, **kwargs)


class _MetaAutocast(torch.autocast):
    """torch.autocast that accepts device_type="meta" (as a disabled CPU autocast): meta has none."""

    def __init__(self, device_type: str, *args, **kwargs):
        super().__init__("cpu" if device_type == "meta" else device_type, *args, **kwargs)


@contextlib.contextmanager
def meta_device():
    """Let code written for an accelerator run on "meta" (autocast regions included)."""
    original = torch.autocast
    torch.autocast = _MetaAutocast
    try:
        yield
    finally:
        torch.autocast = original
