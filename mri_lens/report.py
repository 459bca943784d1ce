"""The reports' former import path (``from mri_lens.report import category_differences``, as published notebooks
write it): the pages are built in :mod:`mri_lens.render.report`, category differences in
:mod:`mri_lens.lenses.mri.compare`."""

from .lenses.mri import category_difference_figure, category_differences
from .render.html import check_link_url
from .render.report import scan_label_counts, write_mri_report, write_scan_report

__all__ = ["category_differences", "category_difference_figure", "check_link_url", "scan_label_counts",
           "write_mri_report", "write_scan_report"]
