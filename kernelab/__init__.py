"""kernelab's command line and reports, a thin layer over :mod:`hwmodels` and :mod:`sim`."""

__version__ = "0.1.0"
