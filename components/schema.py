"""How a schema path names package data, and where that is wherever the component runs.

`package:<package>/<file>` names a data file of an installed Python package: this checkout locally, the project
installed in site-packages inside the container image on Kubeflow/Vertex. The compiled spec carries only the
name, and the schema importer (components/schema_gen.py) resolves it where it runs, so the spec needs neither a
copy on shared storage nor knowledge of the image's site-packages path. Imports nothing heavy: the config uses it.
"""
from __future__ import annotations

import importlib.resources

PACKAGE_SCHEME = "package:"
# The curated schema shipped as package data of `pipeline` (pyproject.toml: package-data).
PACKAGED_SCHEMA = f"{PACKAGE_SCHEME}pipeline/config/schema/schema.pbtxt"


def is_packaged(path: str) -> bool:
    return path.startswith(PACKAGE_SCHEME)


def resolve(path: str) -> str:
    """A `package:` name -> the file's path in the installed package; any other path is returned as is."""
    if not is_packaged(path):
        return path
    package, _, resource = path[len(PACKAGE_SCHEME):].partition("/")
    if not package or not resource:
        raise ValueError(f"{path!r}: expected {PACKAGE_SCHEME}<package>/<file>")
    try:
        root = importlib.resources.files(package)
    except ModuleNotFoundError:
        raise FileNotFoundError(f"{path!r}: package {package!r} is not installed") from None
    found = root.joinpath(resource)
    if not found.is_file():
        raise FileNotFoundError(f"{path!r}: no file {resource!r} in package {package!r} ({root})")
    return str(found)
