"""One module per section of the benchmark report, in the order the report shows them.

Each module exports one ``*_section`` function that reads the results (most
through :class:`session_proxy_bench.report.measurements.Measurements`, the security
and reliability sections from their own entries of the results dict) and
returns a list of document blocks.  Sections never render text and never
import each other's sections, except that the answers section reuses the
findings section's ratio tables; :mod:`session_proxy_bench.report.build` puts them in
order.  To add a section, add a module here and one line to ``build_report``.
"""
