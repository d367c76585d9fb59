"""The review report: figures (``figures``) and one self-contained HTML file (``html.write_report``)."""

from neurochange.report.html import render_report, write_report

__all__ = ["render_report", "write_report"]
