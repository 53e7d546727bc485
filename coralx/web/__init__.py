"""The web viewer behind ``coralx ui``: a Starlette app serving static pages and a JSON API.

Needs the ``ui`` extra (``pip install 'coralx[ui]'``). See ``docs/ui.md``.
"""
