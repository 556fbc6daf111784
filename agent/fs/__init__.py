"""Filesystem capability: every /fs route (files, directories, uploads, zips, watches)."""
