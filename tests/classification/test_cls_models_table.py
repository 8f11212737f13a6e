"""`medannot models`: held-out metrics of any task (segmentation, detection, classification) in one line each."""

from medannot.reporting import metric_summary


def test_detection_metrics_show_ap_and_froc_not_counts_or_settings():
    metrics = {"ap": 0.512, "ap50": 0.8, "ap75": 0.55, "recall_at_100": 0.9, "n_truth": 57, "n_detections": 61,
               "froc": {"score": 0.71, "iou": 0.1, "sensitivity_at": {"0.125": 0.3}}, "per_case": {"x": {"ap50": 0.8}}, "epoch": 12}
    line = metric_summary(metrics)
    assert line == "ap 0.512, ap50 0.800, ap75 0.550, recall_at_100 0.900, froc score 0.710"


def test_segmentation_metrics_keep_the_old_columns():
    metrics = {"mean_dice": 0.942, "dice": {"nucleus": 0.942}, "instance_f1": {"nucleus": 0.889},
               "cases": {"a": {"dice_nucleus": 0.94}}, "instance_counts": {"nucleus": {"tp": 52}}, "epoch": 10}
    assert metric_summary(metrics) == "mean_dice 0.942, dice nucleus 0.942, instance_f1 nucleus 0.889"


def test_classification_metrics_and_the_limit():
    metrics = {"n": 52, "accuracy": 0.596, "balanced_accuracy": 0.439, "macro_f1": 0.396, "roc_auc": 0.84, "brier": 0.5, "ece": 0.1,
               "confusion_matrix": [[1, 2], [3, 4]], "per_class": {"ct": {"precision": 0.4}}, "calibration": {"temperature": 2.0, "ece_after": 0.13}}
    line = metric_summary(metrics, limit=4)
    assert line == "accuracy 0.596, balanced_accuracy 0.439, macro_f1 0.396, roc_auc 0.840, +3 more"
    assert metric_summary({}) == "" and metric_summary({"epoch": 3}) == ""
