"""Inputs and helpers several test modules share (imported as ``support``; pytest puts tests/ on the path)."""
