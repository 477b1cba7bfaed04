"""The session-proxy server: a remote executor for SQLAlchemy proxy engines.

:func:`server.app.create_app` builds the WSGI app; ``session-proxy-server``
(:mod:`server.cli`) serves it with Werkzeug and ``server.wsgi:app`` with
gunicorn.
"""
