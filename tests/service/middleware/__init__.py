"""Tests of service.middleware."""
