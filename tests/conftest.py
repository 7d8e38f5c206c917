"""pytest settings for tests/ (the repository has no pytest.ini)."""


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "slow: a long end-to-end test (runs by default; deselect with -m 'not slow')",
    )
