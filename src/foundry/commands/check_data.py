"""`foundry check-data PATH`: say precisely what is missing or malformed in a data folder."""
from __future__ import annotations

import json

from ..data.check import check_data

HELP = "check a data folder (ModelNet h5, ShapeNet-55, ScanObjectNN, ShapeNetPart) and list its problems"


def register(p):
    p.add_argument("path", help="data folder, or a bundled name (modelnet10, kicadpart)")
    p.add_argument("--full", action="store_true",
                   help="open every per-shape file (ShapeNet-55 / ShapeNetPart text); default: a seeded sample of 200")
    p.add_argument("--max-files", type=int, default=200, help="files opened per split without --full (default 200)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")


def main(args) -> int:
    report = check_data(args.path, max_files=None if args.full else args.max_files)
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.format())
    return 0 if report.ok else 1
