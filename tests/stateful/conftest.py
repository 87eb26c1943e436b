"""The store-path matrix (pytest_cbchaos/testing/store_paths.py) for the store machines."""

from pytest_cbchaos.testing.store_paths import store_path_fixture

store_path = store_path_fixture()
