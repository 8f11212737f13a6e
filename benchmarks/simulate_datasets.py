"""Write the real labelled datasets that ``medannot simulate`` runs on in the README (nnU-Net v2 raw layout).

- ``nuclei-tiles``: the stardist nuclei sample (512x512 fluorescence, 2018 Data Science Bowl; hand-drawn instance
  masks, here as label 1 = nucleus) cut into 64 tiles of 64x64 (TIFF).
- ``mni152-slices``: 28 axial slices (every 4th from z = 40 to 148) of the MNI152 2009a T1 template at 2 mm (every
  2nd voxel in-plane), labels 1 = grey matter, 2 = white matter from its probability maps (> 0.5, the larger wins),
  as 2D float32 TIFF with their 2 mm pixel size (a NIfTI slice would be read back as a one-slice 3D volume and
  simulated with a 3D network). One brain: neighbouring slices are alike, so this set is easier than one of as many
  subjects.

Run: ``python benchmarks/simulate_datasets.py [OUT]`` (default ``runs/simulate-data``; ``make bench`` runs it so) then
``medannot simulate OUT/nuclei-tiles --out runs/sim-nuclei`` (the README's figures: the default options).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from medannot import samples
from medannot.data import Geometry, Image, ImageKind
from medannot.training.federated_data import tile_pairs, write_dataset


def nuclei_tiles(out: Path) -> Path:
    inst = samples.nuclei_instances()
    label = inst.with_array((inst.array > 0).astype(np.uint8))
    pairs = tile_pairs(samples.nuclei_image(), label, (64, 64), "nuclei")
    return write_dataset(pairs, out / "nuclei-tiles", {0: "background", 1: "nucleus"}, channel="fluorescence", file_ending=".tif")


def mni152_slices(out: Path) -> Path:
    t1, tissue = samples.mni152_t1(), samples.mni152_tissue_labels()
    pairs = []
    for z in range(40, 149, 4):
        pixels = t1.array[0, ::2, ::2, z].astype(np.float32)
        labels = tissue.array[0, ::2, ::2, z].astype(np.uint8)
        geo = Geometry(spacing=(2.0, 2.0), origin=tuple(t1.geometry.origin[:2]))
        pairs.append((f"mni152_z{z:03d}", Image(pixels[None], geo, ImageKind.INTENSITY), Image(labels[None], geo, ImageKind.LABEL)))
    return write_dataset(pairs, out / "mni152-slices", {0: "background", 1: "grey matter", 2: "white matter"}, channel="T1",
                         file_ending=".tif")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, nargs="?", default=Path("runs/simulate-data"),
                        help="Folder to write the datasets into (default: runs/simulate-data).")
    args = parser.parse_args()
    for path in (nuclei_tiles(args.out), mni152_slices(args.out)):
        print(path)


if __name__ == "__main__":
    main()
