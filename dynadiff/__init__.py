"""DynaDiff: dynamics-informed weight diffusion (pipeline built on :mod:`weightgraph`)."""

__version__ = "0.1.0"
