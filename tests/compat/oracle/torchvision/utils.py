"""Not used by the compat scripts."""
