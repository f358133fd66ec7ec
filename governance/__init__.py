"""Governance: masking and hashing, the audit_logs guard, policies, leak scan, reports.

This package is the bottom layer: it imports neither ``trace_service`` nor ``jobs``.
"""
