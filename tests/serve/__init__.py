"""Tests of the inference service (serve/); they need only requirements-serve*.txt, never torch."""
