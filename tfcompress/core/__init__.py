"""Machinery shared by every technique: checks, layer walking and replacement."""
