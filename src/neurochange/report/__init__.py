"""The review report: figures (``figures``), number formats (``numbers``) and one self-contained HTML file
(``html.write_report``).

``render_report`` and ``write_report`` are imported on first use, so that ``numbers`` (which the command
line uses for its counts) loads without matplotlib and jinja2.
"""

__all__ = ["render_report", "write_report"]


def __getattr__(name: str):
    if name in __all__:
        from neurochange.report import html

        return getattr(html, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
