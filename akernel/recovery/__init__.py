"""Crash journal and crash reports: what a restarted kernel learns about its predecessor."""
