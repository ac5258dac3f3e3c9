"""The `tfcompress` command line."""
