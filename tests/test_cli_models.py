"""`medannot models` reads on an 80-column terminal: one line of facts and one headline metric per model; the rest is
in `medannot models NAME`."""

from typer.testing import CliRunner

from medannot.cli import app
from medannot.models.bundle import list_bundles
from medannot.reporting import headline_metric

runner = CliRunner()


def test_models_fit_80_columns_with_one_headline_metric_each():
    result = runner.invoke(app, ["models"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert max(len(line) for line in lines) <= 80
    for bundle in list_bundles():
        row = next(line for line in lines if line.strip().startswith(bundle.name + " "))
        headline = headline_metric(bundle.spec.metrics)
        assert headline and headline in row and f"{bundle.spatial_dims}D" in row  # the number is never split or wrapped
    assert "more" not in result.output and "medannot models NAME" in result.output
    assert headline_metric({"mean_dice": 0.9, "accuracy": 0.5}) == "Dice 0.900"
    assert headline_metric({"ap": 0.51, "ap50": 0.8}) == "AP@0.5 0.800"
    assert headline_metric({"roc_auc": 0.84, "brier": 0.5}) == "roc_auc 0.840" and headline_metric({}) == ""


def test_models_name_shows_every_metric_then_the_card():
    result = runner.invoke(app, ["models", "brain-mri"])
    assert result.exit_code == 0, result.output
    head, card = result.output.split("\n# brain-mri", 1)
    assert "held-out metrics:" in head and "mean_dice 0.794" in head and "dice grey matter" in head
    assert "Validation" in card
