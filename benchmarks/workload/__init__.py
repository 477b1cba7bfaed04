"""The reference workload: an Airflow-like metadata schema and its operations.

:mod:`.models` is the schema, :mod:`.seed` a deterministic data generator,
:mod:`.operations` the operations every mode runs (each written once as a
session-taking function), and :mod:`.modes` the switch between direct, proxy
and logical modes.
"""

#: What ``session-proxy-server --operations`` takes to serve the workload's operations.
OPERATIONS_MODULE = f"{__name__}.operations"
