"""The C part is compiled at install (cffi's setuptools integration); everything else is in pyproject.toml."""

from setuptools import setup

setup(cffi_modules=["mvx/mechanics/native/ffibuild.py:ffibuilder"])
