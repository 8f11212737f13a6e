"""docs/adding-a-task.md's module, run as written: a new task registers, trains in the one loop, annotates, evaluates.

It runs in a fresh process (a registered task stays registered for the life of a process).
"""

import re
import subprocess
import sys
import textwrap
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "adding-a-task.md"

DRIVER = textwrap.dedent('''
    import csv, json, sys
    from pathlib import Path
    import numpy as np
    sys.path.insert(0, sys.argv[1])
    import count_task  # the module of the docs, registering its task and network
    from medannot.data import Image, Task
    from medannot.io import write_image
    from medannot.models import list_networks
    from medannot.tasks import EvaluateOptions, get_task, load_predictor, task_of_predictions, train
    from medannot.workflows.annotate import annotate_inputs

    root = Path(sys.argv[2])
    assert Task("count") is count_task.COUNT and get_task("count").description.startswith("how many")
    assert list_networks("count") == ["tiny-counter"]
    cfg = {"name": "counter", "task": "count", "spatial_dims": 2, "network": {"name": "tiny-counter"},
           "epochs": 3, "iterations_per_epoch": 40, "batch_size": 8, "optimizer": {"lr": 0.01}, "num_threads": 1,
           "out": str(root / "bundle")}
    bundle = train(cfg, progress=False)
    spec = json.loads((bundle / "bundle.json").read_text())
    assert spec["task"] == "count" and spec["training"]["run"]["validation_images"] == 16
    rng = np.random.default_rng(7)
    (root / "in").mkdir()
    truth = ["case,count"]
    for i in range(6):
        img, n = count_task.blobs(rng, 32, 4)
        write_image(Image.from_spatial(img), root / "in" / f"c{i}.tif")
        truth.append(f"c{i},{n}")
    (root / "truth.csv").write_text("\\n".join(truth) + "\\n")
    results = annotate_inputs(root / "in", load_predictor(bundle), root / "out")
    assert all(r.ok for r in results), [r.reason for r in results]
    assert task_of_predictions(root / "out") is count_task.COUNT
    result = get_task("count").evaluate(root / "out", root / "truth.csv", root / "ev", EvaluateOptions())
    baseline = np.mean([abs(float(r.split(",")[1]) - 2.0) for r in truth[1:]])  # always guessing the mean count
    print(json.dumps({"mae": result.mae, "baseline": float(baseline), "shipped": spec["metrics"]["mae"]}))
''')


def test_the_documented_task_trains_annotates_and_evaluates(tmp_path):
    code = re.search(r"```python\n(.*?)```", DOC.read_text(), re.S).group(1)
    (tmp_path / "count_task.py").write_text(code)
    (tmp_path / "work").mkdir()
    run = subprocess.run([sys.executable, "-c", DRIVER, str(tmp_path), str(tmp_path / "work")], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    import json

    figures = json.loads(run.stdout.strip().splitlines()[-1])
    assert figures["mae"] < 0.6 * figures["baseline"], figures  # it learned to count, better than the mean guess
    assert figures["shipped"] < 1.0
