"""Warnings (预警, plan 3.2; issue 20): the rules, pure."""
