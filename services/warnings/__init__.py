"""Warnings (预警, issue 20): the API's book of warnings followed from their topic, and how a command
becomes events and notices."""
