"""One module per family of subcommands; each adds its parsers with ``register(subparsers)``."""

from kernelab.commands import hardware, kernels, report, serving, steps, techniques

#: in the order ``kernelab --help`` lists them
MODULES = (hardware, steps, kernels, serving, techniques, report)
