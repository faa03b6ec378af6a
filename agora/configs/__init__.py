"""Packaged run configs: ``agora run tiny`` reads ``agora/configs/tiny.yaml``."""
