"""Warnings (预警, plan section 3.2) and their exchange format, CAP 1.2."""
