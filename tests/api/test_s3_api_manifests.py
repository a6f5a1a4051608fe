"""tests/test_api_manifests.py on S3 and on split stores (see tests/s3_api_support.py)."""

from tests.api import s3_api_support
from tests.api.test_api_manifests import *  # noqa: F403

# Rebinding the name replaces the module's fs fixture for every test imported above.
api = s3_api_support.api

# Reads the fs root directly; the S3 layout is checked by tests/integration/test_s3_migration.py.
del test_stored_under_distribution_layout  # noqa: F821
