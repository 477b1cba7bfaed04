"""Real Airflow 3 components through the proxy (need apache-airflow-core; see tox -e airflow)."""
