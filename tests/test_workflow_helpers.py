"""The rules' helpers in facesketch.workflow: every figure of the report has a caption file and a
subcategory that is a table's title (or one of the fixed groups)."""

from __future__ import annotations

from facesketch.config import load_config
from facesketch.report.plots import plot_files
from facesketch.workflow import figure_caption, figure_subcategory

from .conftest import REPO


def test_every_figure_has_a_caption_file_and_a_group():
    for files in ([REPO / "config.yaml"], [REPO / "config.yaml", REPO / "src/facesketch/configs/demo.yaml"]):
        cfg = load_config([str(f) for f in files])
        titles = {t["title"] for t in cfg["tables"].values()}
        for figure in plot_files(cfg):
            assert (REPO / "rules" / figure_caption(figure)).is_file(), figure
            group = figure_subcategory(cfg, figure)
            assert group in titles | {"Per style", "Beyond the papers", "Image grids", "Training"}, (figure, group)
            if figure.startswith("metrics_per_style_"):
                assert group == cfg["tables"][figure.removeprefix("metrics_per_style_")]["title"]
