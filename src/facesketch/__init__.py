"""facesketch: reproducible facial sketch synthesis on FS2K (HIDA, edge/normal-aware CycleGAN)."""

__version__ = "0.1.0"

STYLES = ("Style1", "Style2", "Style3")
"""FS2K's JSON style 0/1/2, named as the papers name them."""
