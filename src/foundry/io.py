"""Files and identities every layer shares: atomic writes, JSON, fingerprints, file checksums and
a description of the machine a result was measured on.

Below everything but validation (no model or data module is imported), so that data, eval,
train and bench write files without reaching into a model module.
"""
from __future__ import annotations

import glob
import hashlib
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch


# -- atomic writes -------------------------------------------------------------------------------
def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> None:
    """Write through a temporary file in the same folder, then rename: never a half file.

    The temporary name carries this process id, so leftovers of a killed writer (whose process
    is gone) are removed on the next write of the same file. The file gets the usual umask mode
    (mkstemp alone would make it 0600)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_text(path, text: str) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def _umask() -> int:
    if not hasattr(_umask, "value"):  # read once: os.umask can only be read by setting it
        current = os.umask(0o022)
        os.umask(current)
        _umask.value = current
    return _umask.value


def remove_stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Delete `.NAME.PID.*.tmp` files next to `path` left by writers that no longer run."""
    path = Path(path)
    removed = []
    if not path.parent.is_dir():
        return removed
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        pid = tmp.name[len(path.name) + 2:].split(".", 1)[0]
        if pid.isdigit() and not _process_alive(int(pid)):
            try:
                tmp.unlink()
                removed.append(tmp)
            except OSError:
                pass
    return removed


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


# -- JSON ------------------------------------------------------------------------------------------
def json_default(o):
    """numpy scalars and arrays as Python numbers and lists, paths and anything else as text."""
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def write_json(path, obj, *, indent: int = 2) -> None:
    """`obj` as JSON at `path`, atomically, with a final newline."""
    write_text(path, json.dumps(obj, indent=indent, default=json_default) + "\n")


# -- identities ------------------------------------------------------------------------------------
def config_dict(model: torch.nn.Module) -> dict:
    """A model's config as a plain dict (every Foundry config has `to_dict`)."""
    cfg = model.config
    return cfg.to_dict() if hasattr(cfg, "to_dict") else dict(cfg)


def identity_config(model: torch.nn.Module) -> dict:
    """`config_dict` as fingerprints and token caches name a model: the outlier filter left out when
    off, as every config was written while it was off by default (until 2026-12-05), so a filter-off
    model keeps the fingerprint of its earlier evaluations and caches. (Checkpoints always write the
    field; a file without it loads with today's default, on.) Nested configs too (a ToMe baseline holds
    its teacher's)."""
    def strip(d):
        return {k: strip(v) if isinstance(v, dict) else v for k, v in d.items()
                if not (k == "outlier_filter" and v is False)}
    return strip(config_dict(model))


def weights_fingerprint(model: torch.nn.Module) -> str:
    """sha256 over the state dict (names, shapes, values as float32): the same weights give the
    same value whatever their dtype (token caches name their teacher by it)."""
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(str(tuple(v.shape)).encode())
        t = v.detach().cpu()
        t = t.float() if t.is_floating_point() else t
        h.update(t.contiguous().numpy().tobytes())
    return h.hexdigest()


def model_fingerprint(model: torch.nn.Module) -> str:
    """sha256 of a model's kind, config and raw weight bytes: what makes two evaluations the same
    model (a cast to another dtype is another model here)."""
    h = hashlib.sha256()
    h.update(str(model.kind).encode())
    h.update(json.dumps(identity_config(model), sort_keys=True, default=str).encode())
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(str(tuple(v.shape)).encode())
        if v.numel():
            h.update(v.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def file_sha256(path, chunk: int = 1 << 24) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


# -- the machine -----------------------------------------------------------------------------------
def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_name(device, world_size: int | None = None) -> str:
    """One line for run records: the GPU's name, or the CPU's with the torch thread count."""
    dev = torch.device(device)
    text = (torch.cuda.get_device_name(dev) if dev.type == "cuda"
            else f"cpu ({cpu_name()}, {torch.get_num_threads()} threads)")
    return text if world_size is None else f"{text} x{world_size}"


def _cpu_isa() -> str | None:
    try:
        return torch.backends.cpu.get_cpu_capability()
    except (AttributeError, RuntimeError):  # torch builds without the query
        return None


def machine_info(device, threads: int | None = None) -> dict:
    """What a measurement ran on: device, CPU, threads, load, versions, time. `cpu_isa` is the vector
    instruction set torch's CPU kernels use (AVX2, AVX512, ...): two hosts of one CPU name may differ in
    it, and so in how float sums round (one random floor's part-segmentation score moved by 0.2 between
    two such hosts while it repeats bit for bit on one)."""
    device = torch.device(device)
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = None
    info = {"device": str(device), "cpu": cpu_name(), "cpu_isa": _cpu_isa(), "cpu_count": os.cpu_count(),
            "load_average_1_5_15min": load,
            "torch": torch.__version__, "python": platform.python_version(),
            "torch_threads": torch.get_num_threads() if threads is None else threads,
            "platform": platform.platform(), "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    if device.type == "cuda" and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
    return info
