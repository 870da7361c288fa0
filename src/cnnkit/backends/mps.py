"""``cnnkit.backends.mps``: Apple's Metal backend is never available in cnnkit."""


def is_available() -> bool:
    """Always False."""
    return False


def is_built() -> bool:
    """Always False."""
    return False
