"""Every one of the 10,000 CIFAR-10 test JPEGs takes the JPEG fast path (serve/jpeg_fast_path.py) and gets exactly the
pixels Pillow's path gives it."""

from __future__ import annotations

import tarfile

import numpy as np
import pytest

from contract.model_file import RESIZE_CENTER_CROP
from serve.imaging import decode_if_cheap, to_model_input
from serve.jpeg_fast_path import decode_exact_size
from tests.photos import CIFAR_TEST_TAR

pytestmark = [pytest.mark.realdata, pytest.mark.slow]
OPTIONS = {"size": (32, 32), "policy": RESIZE_CENTER_CROP, "max_pixels": 10**7}


def test_the_fast_path_matches_pillow_on_every_test_jpeg():
    assert CIFAR_TEST_TAR.is_file(), f"{CIFAR_TEST_TAR} is missing: run `make data` (dvc pull)"
    checked = 0
    with tarfile.open(CIFAR_TEST_TAR) as tar:
        for member in tar:
            if not member.isfile():
                continue
            data = tar.extractfile(member).read()
            fast = decode_exact_size(data, OPTIONS["size"])
            assert fast is not None, f"{member.name} did not take the fast path"
            np.testing.assert_array_equal(fast, to_model_input(data, **OPTIONS), err_msg=member.name)
            np.testing.assert_array_equal(decode_if_cheap(data, **OPTIONS).pixels, fast, err_msg=member.name)
            checked += 1
    assert checked == 10_000
