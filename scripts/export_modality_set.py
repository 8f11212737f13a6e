"""Write the real modality samples as a folder per class of 16-bit PNGs (for `medannot index` / `similar --evaluate`).

    .venv/bin/python scripts/export_modality_set.py OUT [--groups g1,g2,...]

Files are named ``OUT/<class>/<source group>__<view>.png`` so retrieval evaluations can leave out
neighbours from the same source (see medannot.training.modality_samples.export_modality_folder).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from medannot.training.modality_samples import export_modality_folder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("out", type=Path)
    ap.add_argument("--groups", default=None, help="comma-separated source groups (default: all available)")
    args = ap.parse_args()
    n = export_modality_folder(args.out, args.groups.split(",") if args.groups else None)
    print(f"wrote {n} images under {args.out}")


if __name__ == "__main__":
    main()
