"""Warnings (预警, plan 3.2; issue 20): the rules (rules.py) and CAP 1.2 (cap.py), pure."""
