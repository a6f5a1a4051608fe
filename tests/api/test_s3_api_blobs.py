"""tests/test_api_blobs.py on S3 and on split stores (see tests/s3_api_support.py)."""

from tests.api import s3_api_support
from tests.api.test_api_blobs import *  # noqa: F403

# Rebinding the name replaces the module's fs fixture for every test imported above.
api = s3_api_support.api
