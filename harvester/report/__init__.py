"""`harvest report`'s room: the report's view (model.py, pure), its figures (charts.py,
matplotlib, imported only here) and the one self-contained HTML page (render.py, jinja2)."""
