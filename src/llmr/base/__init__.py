"""Shared pieces below every stage: atomic files and manifests, devices and encoders, progress bars."""
