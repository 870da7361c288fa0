"""Functional ops: one module per family, each op a Function with forward and backward."""
