"""The session-proxy server: a remote executor for SQLAlchemy proxy engines.

:func:`session_proxy_server.app.create_app` builds the WSGI app; ``session-proxy-server``
(:mod:`session_proxy_server.cli`) serves it with Werkzeug and ``session_proxy_server.wsgi:app`` with
gunicorn.
"""
