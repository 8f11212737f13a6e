"""Benchmark: classifying and explaining one image with the bundled ``modality`` model, medannot vs bare MONAI.

Real inputs: the 512x512 stardist nuclei image (2D) and the 197x233x189 MNI152 T1 template (a 2D model sees its
middle slice). Timed in one run, after a warm-up, median of repeats, 2 CPU threads:

* medannot ``Classifier.predict``: grey, middle slice, percentile scaling, pad to square, resize, network,
  temperature-scaled softmax, embedding;
* bare MONAI: ``ScaleIntensityRangePercentiles`` + ``ResizeWithPadOrCrop`` to a square + ``Resize`` + the same
  network + softmax (what a user would write by hand);
* explanations: medannot's Grad-CAM + occlusion (log-odds, ~170 windows) against MONAI ``GradCAM`` +
  ``OcclusionSensitivity`` with its defaults (mask 16, overlap 0.6).

Prints milliseconds per image and ratios (medannot / MONAI).

Usage::

    .venv/bin/python benchmarks/classification.py [--repeats 10]
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from retrieval import median_ms  # noqa: E402  (benchmarks/retrieval.py)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=10)
    args = ap.parse_args()

    import torch
    from monai.transforms import Compose, Resize, ResizeWithPadOrCrop, ScaleIntensityRangePercentiles
    from monai.visualize import GradCAM, OcclusionSensitivity

    from medannot import samples
    from medannot.models.classification import gradcam_layer
    from medannot.tasks import load_predictor

    torch.set_num_threads(2)
    warnings.simplefilter("ignore")
    annotator = load_predictor("modality")
    clf = annotator.classifier
    net = clf.network.eval()
    size = clf.input_spec.input_size
    images = {"2D nuclei 512x512": samples.nuclei_image(), "3D MNI152 T1 197x233x189": samples.mni152_t1()}

    def monai_input(image) -> torch.Tensor:
        a = np.asarray(image.array, np.float32)
        if a.ndim == 4:
            a = a[..., a.shape[-1] // 2]
        side = max(a.shape[1:])
        pipe = Compose([ScaleIntensityRangePercentiles(1, 99, 0, 1, clip=True), ResizeWithPadOrCrop((side, side)),
                        Resize(size, mode="area")])
        return torch.as_tensor(pipe(a))[None].float()

    for name, image in images.items():
        def ours(image=image) -> None:
            clf.predict(image)

        def bare(image=image) -> None:
            with torch.inference_mode():
                torch.softmax(net(monai_input(image)), 1)

        def ours_explain(image=image) -> None:
            annotator.explain_maps(image, clf.prepare(image), 0)

        def bare_explain(image=image) -> None:
            x = monai_input(image)
            GradCAM(nn_module=net, target_layers=gradcam_layer("densenet-small"))(x, class_idx=0)
            with torch.inference_mode():
                OcclusionSensitivity(nn_module=net, verbose=False)(x)

        t_o, t_b = median_ms(ours, args.repeats), median_ms(bare, args.repeats)
        e_o, e_b = median_ms(ours_explain, max(3, args.repeats // 3)), median_ms(bare_explain, max(3, args.repeats // 3))
        print(f"{name}: classify {t_o:7.1f} ms (MONAI {t_b:7.1f} ms, ratio {t_o / t_b:.2f}); "
              f"explain {e_o:7.1f} ms (MONAI {e_b:7.1f} ms, ratio {e_o / e_b:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
