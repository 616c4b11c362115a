"""Tests of the load-test tool (loadtest/): it runs, stays on 127.0.0.1, and its report is sane."""
