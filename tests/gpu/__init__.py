"""Tests on a real NVIDIA GPU (marked ``gpu``): NVML discovery and HAMi-core's limits."""
