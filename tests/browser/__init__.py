"""Tests that run the served dashboards: ``workbench up`` over HTTP and in headless Chromium."""
