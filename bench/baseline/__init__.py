"""Frozen copies of code that ``make bench`` compares today's code against (see its modules)."""
