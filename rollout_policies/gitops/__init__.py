"""Decisions as versioned infra changes: stack config edits, commits, pushes, pull requests, notifications."""
