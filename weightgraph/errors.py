"""Exceptions raised by :mod:`weightgraph`; all derive from :class:`WeightGraphError`."""


class WeightGraphError(ValueError):
    """Base class: a module, state dict or graph that weightgraph cannot use as given."""


class UnsupportedLayerError(WeightGraphError):
    """A parameter whose node layout cannot be inferred (pass ``strict=False`` to carry it opaquely)."""


class TraceError(WeightGraphError):
    """Neither ``torch.fx`` symbolic tracing nor ``torch.export`` could capture the module."""


class ArchitectureMismatchError(WeightGraphError):
    """A graph or state dict does not fit the architecture it is loaded into."""
