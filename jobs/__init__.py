"""Retention pruning, partition maintenance, report generation and the scheduler process."""
