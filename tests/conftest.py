"""Shared pytest setup.

Hardware needs are markers turned into skips here, from capability checks:
``@pytest.mark.gpu`` runs only where kernels_cuda.backends() says CUDA is
usable, and the skip says why it is not.
"""

import pytest


def pytest_collection_modifyitems(config, items):
    gpu_items = [item for item in items if item.get_closest_marker("gpu") is not None]
    if not gpu_items:
        return
    import kernels_cuda  # only when a gpu test was collected

    report = kernels_cuda.backends()
    if report["cuda_usable"]:
        return
    skip = pytest.mark.skip(reason=f"needs a usable CUDA device: {report['reason']}")
    for item in gpu_items:
        item.add_marker(skip)
