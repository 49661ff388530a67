"""Benchmarks (see bench/README.md); a package so that one script can reuse another."""
