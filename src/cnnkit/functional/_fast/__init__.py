"""Fast paths of ops whose maths lives in :mod:`cnnkit.functional` (one module per op,
each behind one forward and one backward with the reference path's signature)."""
