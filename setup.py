"""For Beam's `--setup_file` only (`--set beam_setup_file=/path/to/checkout/setup.py`: Dataflow workers without the
pipeline image). Beam 2.59 accepts nothing but a file named setup.py there and builds the sdist it stages from that
file's folder; the project's metadata, packages and package data are all in pyproject.toml."""
from setuptools import setup

setup()
