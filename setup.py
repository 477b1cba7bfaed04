"""Install names: the ``server/`` and ``benchmarks/`` folders install under names
derived from ``session_proxy``, so no generic top-level package (``server``,
``benchmarks``) lands on an application's ``sys.path``.

Everything else about the distribution is declared in ``setup.cfg``.
"""

from setuptools import find_packages, setup

#: repository folder -> installed import name
INSTALL_NAMES = {
    "server": "session_proxy_server",
    "benchmarks": "session_proxy_bench",
}


def _packages() -> tuple[list[str], dict[str, str]]:
    packages = find_packages(include=["session_proxy", "session_proxy.*"])
    package_dir: dict[str, str] = {}
    for folder, name in INSTALL_NAMES.items():
        package_dir[name] = folder
        packages += [name] + [f"{name}.{sub}" for sub in find_packages(folder)]
    return packages, package_dir


PACKAGES, PACKAGE_DIR = _packages()

setup(packages=PACKAGES, package_dir=PACKAGE_DIR)
