"""Reports a person looks into: one self-contained HTML page with tables, figures and 3-D views."""
from .html import write_html_report
from .views import cloud_views

__all__ = ["cloud_views", "write_html_report"]
