"""Simulated libraries for tests."""
