"""Tests of the scripts in bench/ (run by hand, never timed here)."""
