"""Backtest reports: the papermill template's functions, and running it (one report or a batch) to HTML.

In the template: ``report = prepare(...)``, ``report.run()``, then ``report.show_metrics()`` and the
other sections (built by :mod:`workbench.reports.sections`). From Python or the ``workbench report``
command: :func:`run_report` and :func:`run_batch`.
"""
from __future__ import annotations

from workbench.reports.batch import BatchError, run_batch
from workbench.reports.report import Report, ReportParameterError, prepare
from workbench.reports.run import ReportError, ReportOutput, run_report, template_path

__all__ = [
    "BatchError", "Report", "ReportError", "ReportOutput", "ReportParameterError", "prepare", "run_batch",
    "run_report", "template_path",
]
