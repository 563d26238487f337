"""mcu_ray's version: recorded beside every stored artifact and export (``code_version``).

A module of its own, at the bottom of the import graph: the store imports it, and the package's
``__init__`` (whose ``load`` imports the tables and so the store) takes ``__version__`` from here.
"""
__version__ = "0.1.0"
