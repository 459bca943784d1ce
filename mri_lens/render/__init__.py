"""Rendering: the one HTML page shell and its assets (html.py), and the offline reports built from the lenses
(report.py)."""
