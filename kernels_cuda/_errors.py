"""Exceptions of kernels_cuda. Both subclass RuntimeError.

Defined in Python, not in the compiled module, so they exist (and can be
caught) even when the extension is not built.
"""


class CudaUnavailableError(RuntimeError):
    """CUDA was asked for but cannot be used: the extension was built without
    CUDA, or there is no driver, no device, or no kernel image for the device.
    The message says which. Code that asked for CUDA gets this error, never a
    silent CPU fallback."""


class ExtensionNotBuiltError(RuntimeError):
    """The compiled module kernels_cuda._ext could not be imported (e.g. a
    source tree that was never built or installed); the message says why."""
