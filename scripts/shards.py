"""Split files into verified parts that fit a size limit, and join them back.

Made for bringing a checkpoint home from a machine that returns files of at most 16 MiB each
(scripts/gpu_session.sh); works for any file.

    python scripts/shards.py split FILE [FILE ...] --out-dir DIR [--max-bytes N]
                                   [--max-files N] [--max-total N] [--manifest PATH]
    python scripts/shards.py join PART [PART ...] OUT        # OUT: a file, or a folder
    python scripts/shards.py verify PART [PART ...]
    python scripts/shards.py fp16 SRC DST                    # Foundry checkpoint -> float16 copy

Every part is self-describing: a fixed magic line, an 8-byte length, a JSON header (file name,
part index and count, offset, payload size and sha256, and the whole file's size and sha256,
all recorded at split time), then the payload. `join` refuses with an error that names the
problem when a part is missing, truncated, corrupt, duplicated with other contents, or belongs
to another file, and checks the whole file's sha256 before it writes OUT (atomically).

`split` with --max-files / --max-total takes the files in the order given and leaves out (with
a note in the manifest and on stderr) any file whose parts would break those totals.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import json
import os
import struct
import sys
import tempfile
from pathlib import Path

MAGIC = b"FOUNDRY-SHARD/1\n"  # 16 bytes
MIB = 1 << 20
DEFAULT_MAX_BYTES = 16_000_000  # whole part file, header included; under 16 MiB (16,777,216)
_RESERVED_HEADER = 4096  # room kept for the header when sizing payloads


class ShardError(ValueError):
    """A part set that cannot be joined (missing, corrupt, mixed) or a bad request."""


def _sha256_file(path: Path, chunk: int = 4 * MIB) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(chunk)
            if not b:
                return h.hexdigest()
            h.update(b)


def part_name(name: str, index: int, count: int) -> str:
    """File name of part `index` (0-based) of `count`: NAME.part1of3 (letters, digits, '.', '-', '_' only)."""
    return f"{name}.part{index + 1}of{count}"


def plan_parts(size: int, max_bytes: int) -> int:
    payload = max_bytes - _RESERVED_HEADER
    if payload < 1:
        raise ShardError(f"--max-bytes {max_bytes} leaves no room for data; use more than {_RESERVED_HEADER} bytes")
    return max(1, -(-size // payload))


def split_file(path, out_dir, *, max_bytes: int = DEFAULT_MAX_BYTES, name: str | None = None) -> dict:
    """Write the parts of `path` into `out_dir`; returns its manifest entry (also the headers' content)."""
    path, out_dir = Path(path), Path(out_dir)
    if not path.is_file():
        raise ShardError(f"no such file to split: {path}")
    name = name or path.name
    size = path.stat().st_size
    count = plan_parts(size, max_bytes)
    payload = -(-size // count) if size else 0  # even parts
    total_sha = _sha256_file(path)
    out_dir.mkdir(parents=True, exist_ok=True)
    created = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    entry = {"name": name, "size": size, "sha256": total_sha, "count": count, "created": created, "parts": []}
    with open(path, "rb") as src:
        for i in range(count):
            data = src.read(payload) if i < count - 1 else src.read()
            header = {"format": "foundry-shard", "version": 1, "name": name, "index": i, "count": count,
                      "offset": i * payload, "size": len(data), "sha256": hashlib.sha256(data).hexdigest(),
                      "total_size": size, "total_sha256": total_sha, "created": created}
            blob = json.dumps(header, sort_keys=True).encode()
            target = out_dir / part_name(name, i, count)
            with open(target, "wb") as f:
                f.write(MAGIC)
                f.write(struct.pack("<Q", len(blob)))
                f.write(blob)
                f.write(data)
            if target.stat().st_size > max_bytes:  # only with a header far larger than expected
                raise ShardError(f"{target} came out at {target.stat().st_size} bytes, over --max-bytes {max_bytes}")
            entry["parts"].append({"file": target.name, "bytes": target.stat().st_size, "sha256": header["sha256"]})
    return entry


def read_part(path) -> tuple[dict, bytes]:
    """(header, payload) of one part, checked against its own header."""
    path = Path(path)
    if not path.is_file():
        raise ShardError(f"part not found: {path}")
    raw = path.read_bytes()
    if not raw.startswith(MAGIC):
        raise ShardError(f"{path} is not a part written by shards.py split (it does not start with {MAGIC!r})")
    try:
        (n,) = struct.unpack_from("<Q", raw, len(MAGIC))
        start = len(MAGIC) + 8
        header = json.loads(raw[start:start + n].decode())
        payload = raw[start + n:]
        keys = ("name", "index", "count", "size", "sha256", "total_size", "total_sha256")
        missing = [k for k in keys if k not in header]
    except (struct.error, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ShardError(f"{path}: the part's header is damaged ({exc}); copy the part again") from exc
    if missing:
        raise ShardError(f"{path}: the part's header lacks {missing}; copy the part again")
    label = f"{path} (part {header['index'] + 1} of {header['count']} of {header['name']})"
    if len(payload) != header["size"]:
        raise ShardError(f"{label} is truncated or padded: {len(payload)} bytes of data, {header['size']} recorded "
                         "at split time; copy the part again")
    if hashlib.sha256(payload).hexdigest() != header["sha256"]:
        raise ShardError(f"{label} is corrupt: its sha256 differs from the one recorded at split time; "
                         "copy the part again")
    return header, payload


def join_parts(parts, out, *, force: bool = False) -> Path:
    """Check `parts` (all the parts of one file, any order) and write the whole file to `out`."""
    parts = [Path(p) for p in parts]
    if not parts:
        raise ShardError("no parts given to join")
    by_index: dict[int, tuple[Path, dict, bytes]] = {}
    first = None
    for p in parts:
        header, payload = read_part(p)
        ident = (header["name"], header["count"], header["total_size"], header["total_sha256"])
        if first is None:
            first = (p, ident)
        elif ident != first[1]:
            raise ShardError(f"{p} is a part of {header['name']} (sha256 {header['total_sha256'][:12]}...), "
                             f"but {first[0]} is a part of {first[1][0]} (sha256 {first[1][3][:12]}...): "
                             "join the parts of one file at a time")
        i = header["index"]
        if i in by_index and by_index[i][2] != payload:
            raise ShardError(f"{p} and {by_index[i][0]} are both part {i + 1} with different contents")
        by_index[i] = (p, header, payload)
    name, count, total_size, total_sha = first[1]
    absent = [i for i in range(count) if i not in by_index]
    if absent:
        names = ", ".join(part_name(name, i, count) for i in absent)
        raise ShardError(f"missing {len(absent)} of the {count} parts of {name}: {names}; "
                         "pass every part (e.g. a shell glob NAME.part*)")
    data = b"".join(by_index[i][2] for i in range(count))
    if len(data) != total_size or hashlib.sha256(data).hexdigest() != total_sha:
        raise ShardError(f"the joined {name} does not match the sha256 recorded at split time "
                         f"({len(data)} bytes, {total_size} expected): a part is from another split")
    out = Path(out)
    if out.is_dir():
        out = out / name
    if out.exists() and not force:
        if out.is_file() and _sha256_file(out) == total_sha:
            return out  # already there, identical
        raise ShardError(f"{out} exists and differs; remove it or pass --force")
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, out)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return out


def split_many(files, out_dir, *, max_bytes=DEFAULT_MAX_BYTES, max_files=None, max_total=None) -> dict:
    """Split `files` in order; a file whose parts would pass max_files / max_total is left out."""
    manifest = {"format": "foundry-shards-manifest", "version": 1, "max_bytes": max_bytes, "max_files": max_files,
                "max_total": max_total, "files": [], "left_out": []}
    used_files, used_bytes = 0, 0
    for f in files:
        f = Path(f)
        if not f.is_file():
            manifest["left_out"].append({"name": f.name, "why": "not found"})
            continue
        size = f.stat().st_size
        count = plan_parts(size, max_bytes)
        est = size + count * _RESERVED_HEADER
        why = None
        if max_files is not None and used_files + count > max_files:
            why = f"{count} more parts would pass --max-files {max_files} ({used_files} used)"
        elif max_total is not None and used_bytes + est > max_total:
            why = f"{est} more bytes would pass --max-total {max_total} ({used_bytes} used)"
        if why:
            manifest["left_out"].append({"name": f.name, "path": str(f), "bytes": size, "why": why})
            print(f"shards.py split: leaving out {f}: {why}", file=sys.stderr)
            continue
        entry = split_file(f, out_dir, max_bytes=max_bytes)
        entry["source"] = str(f)
        used_files += entry["count"]
        used_bytes += sum(p["bytes"] for p in entry["parts"])
        manifest["files"].append(entry)
    manifest["part_files"], manifest["part_bytes"] = used_files, used_bytes
    return manifest


def to_fp16(src, dst) -> dict:
    """Write a float16 copy of a Foundry checkpoint (info kept, dtype noted); returns what fp16 changed."""
    import torch

    from foundry.models.checkpoint import load_checkpoint, save_checkpoint

    model = load_checkpoint(src)
    info = dict(getattr(model, "checkpoint_info", {}) or {})
    info["dtype"] = "float16 (trained with fp32 master weights)"
    save_checkpoint(model, dst, info=info, dtype=torch.float16)
    half = load_checkpoint(dst)
    n = max(int(getattr(model.config, "num_points", 1024) or 1024), 64)
    x = torch.rand(4, n, 3, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        a, b = model.forward_features(x), half.forward_features(x)
    return {"src": str(src), "dst": str(dst), "bytes": Path(dst).stat().st_size,
            "max_abs_diff": float((a - b).abs().max()), "rel_diff": float((a - b).norm() / a.norm().clamp_min(1e-12))}


def _int(text: str) -> int:
    text = text.strip().lower()
    for suffix, mul in (("mib", MIB), ("kib", 1024), ("mb", 10**6), ("kb", 10**3)):
        if text.endswith(suffix):
            return int(float(text[: -len(suffix)]) * mul)
    return int(float(text))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("split", help="split files into verified parts")
    s.add_argument("files", nargs="+")
    s.add_argument("--out-dir", required=True)
    s.add_argument("--max-bytes", type=_int, default=DEFAULT_MAX_BYTES,
                   help=f"largest part file, header included (default {DEFAULT_MAX_BYTES}; 16MiB, 15.5MiB, 4MB work)")
    s.add_argument("--max-files", type=int, default=None, help="most part files in all (files that would pass it are left out)")
    s.add_argument("--max-total", type=_int, default=None, help="most bytes of parts in all (likewise)")
    s.add_argument("--manifest", default=None, help="write the manifest (JSON) here; it is printed otherwise")
    j = sub.add_parser("join", help="check the parts of one file and write it")
    j.add_argument("parts", nargs="+")
    j.add_argument("out", help="the file to write, or a folder (the original name is kept)")
    j.add_argument("--force", action="store_true", help="overwrite OUT if it exists and differs")
    v = sub.add_parser("verify", help="check parts without writing anything")
    v.add_argument("parts", nargs="+")
    h = sub.add_parser("fp16", help="float16 copy of a Foundry checkpoint")
    h.add_argument("src")
    h.add_argument("dst")
    args = p.parse_args(argv)
    try:
        if args.cmd == "split":
            m = split_many(args.files, args.out_dir, max_bytes=args.max_bytes, max_files=args.max_files,
                           max_total=args.max_total)
            text = json.dumps(m, indent=1)
            if args.manifest:
                Path(args.manifest).parent.mkdir(parents=True, exist_ok=True)
                Path(args.manifest).write_text(text + "\n")
            else:
                print(text)
            for e in m["files"]:
                print(f"split {e['source']} -> {e['count']} part(s) in {args.out_dir} (sha256 {e['sha256'][:16]}...)",
                      file=sys.stderr)
            return 0
        if args.cmd == "join":
            out = join_parts(args.parts, args.out, force=args.force)
            print(f"joined {len(args.parts)} part(s) -> {out} ({out.stat().st_size} bytes, sha256 verified)")
            return 0
        if args.cmd == "verify":
            for part in args.parts:
                header, _ = read_part(part)
                print(f"ok {part}: part {header['index'] + 1} of {header['count']} of {header['name']}")
            return 0
        if args.cmd == "fp16":
            print(json.dumps(to_fp16(args.src, args.dst)))
            return 0
    except ShardError as exc:
        print(f"shards.py {args.cmd}: error: {exc}", file=sys.stderr)
        return 2
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
