"""``cnnkit.backends.cudnn``: ``benchmark`` / ``deterministic`` / ``enabled`` are accepted
and ignored (there is no cuDNN on the CPU)."""

benchmark = False
deterministic = False
enabled = True


def is_available() -> bool:
    """Always False."""
    return False
