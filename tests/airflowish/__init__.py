"""A small application written the way Airflow is: a settings module holding
``engine`` and a scoped ``Session``, models, and functions that use
``@provide_session``.  It knows nothing about session-proxy; the drop-in
tests run its own checks direct and after ``session_proxy.settings.install``.
"""
