"""Digits read from scikit-learn's bundled CSV without importing scikit-learn."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
from sklearn.datasets import load_digits

from ebm_ppl import data


def test_digits_csv_equals_load_digits():
    assert data._digits_csv() is not None
    pixels = data._digits_pixels()
    reference = load_digits().data
    assert pixels.dtype == reference.dtype and pixels.shape == reference.shape == (1797, 64)
    np.testing.assert_array_equal(pixels, reference)
    train, test = data.binarized_digits()
    ref = (reference >= 8.0).astype(np.float32)
    np.testing.assert_array_equal(train, ref[:1500])
    np.testing.assert_array_equal(test, ref[1500:])
    grey_train, _ = data.digits(binarize=False)
    np.testing.assert_array_equal(grey_train, (reference[:1500] / 16.0).astype(np.float32))


def test_digits_fallback_to_load_digits(monkeypatch):
    monkeypatch.setattr(data, "_digits_csv", lambda: None)
    np.testing.assert_array_equal(data._digits_pixels(), load_digits().data)


def test_binarized_digits_does_not_import_sklearn():
    code = (
        "import sys; from ebm_ppl.data import binarized_digits; tr, te = binarized_digits(); "
        "print(tr.shape, te.shape, 'sklearn' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["(1500,", "64)", "(297,", "64)", "False"]
