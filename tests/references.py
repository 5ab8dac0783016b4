"""Exact and published reference values the test suite compares against, with their sources.

Every number here was written by somebody else (a paper, a closed form evaluated in high
precision, or a brute-force enumeration anyone can rerun); the formula or the source is given
next to each value so a failing test can be checked by hand. Tests import these names instead
of restating the numbers.
"""

from __future__ import annotations

import math

# --------------------------------------------------------------------------- 2-D Ising model
# E(s) = -sum_<ij> s_i s_j on an L x L torus, each bond once (2N bonds), J = 1, h = 0.

#: Critical temperature T_c = 2 / ln(1 + sqrt 2) (Onsager 1944, Phys. Rev. 65, 117).
ISING_T_C = 2.0 / math.log(1.0 + math.sqrt(2.0))

#: Onsager's spontaneous magnetization M(T) = (1 - sinh(2/T)^-4)^(1/8) (Yang 1952) and energy
#: per spin u(T) = -coth(2b)[1 + (2/pi)(2 tanh^2(2b) - 1) K(k)], k = 2 sinh(2b)/cosh^2(2b),
#: K the complete elliptic integral of the first kind (Onsager 1944), at T -> (M, u).
ONSAGER = {
    1.5: (0.986499603, -1.951116573),
    2.0: (0.911319378, -1.745564575),
    2.2: (0.784755131, -1.546489144),
    2.5: (0.0, -1.106079204),
    3.0: (0.0, -0.817309593),
}

#: Exact 4 x 4 torus by enumeration of its 2^16 states (and Kaufman 1949, Phys. Rev. 76, 1232):
#: T -> (ln Z, u per spin, <|m|>, <m^2>).
EXACT_4X4 = {
    2.0: (17.1053671187, -1.7553802888, 0.9189432674, 0.8689216816),
    3.0: (13.2810334556, -1.0170696270, 0.6012913260, 0.4509881408),
}

#: The 4 x 4 torus's ln Z at T = 2.0 (the row above), used by the log-Z estimators' tests.
ISING_4X4_LOG_Z_T2 = EXACT_4X4[2.0][0]

# --------------------------------------------------------------------------- double well
# E(x) = a (x^2 - 1)^2 on R: Z(a) = (pi/2) e^{-a/2} [I_{-1/4}(a/2) + I_{1/4}(a/2)]
# (modified Bessel functions of the first kind; evaluated with mpmath to 12 digits).

#: Z(a = 1) and E[x^2] under a = 1.
DOUBLE_WELL_Z_A1 = 1.973732150090
DOUBLE_WELL_EX2_A1 = 0.8327454871
#: Z(a = 2) and E[x^2] under a = 2.
DOUBLE_WELL_Z_A2 = 1.410914703196
DOUBLE_WELL_EX2_A2 = 0.8521361522

# --------------------------------------------------------------------------- binarized digits
#: scikit-learn's ``load_digits`` binarized at >= 8 of 16, first 1500 rows train, last 297
#: test: independent-Bernoulli test log-likelihood (maximum likelihood on the training rows,
#: computed in closed form) and an RBM with 4 hidden units trained by exact maximum likelihood
#: (gradient of the exact log-likelihood with log Z by enumerating the 2^4 hidden states),
#: nats per image.
DIGITS_INDEPENDENT_BERNOULLI_TEST_LL = -24.58
DIGITS_RBM4_EXACT_ML_TEST_LL = -20.80


def ring_log_z(radius: float, scale: float) -> float:
    """ln Z of the 2-D ring energy ``(||x|| - R)^2 / (2 s^2)`` (polar coordinates).

    ``Z = 2 pi [s^2 e^{-R^2/(2 s^2)} + R s sqrt(pi/2) (1 + erf(R / (s sqrt 2)))]``.
    """
    s, r = scale, radius
    z = (
        2
        * math.pi
        * (
            s**2 * math.exp(-(r**2) / (2 * s**2))
            + r * s * math.sqrt(math.pi / 2) * (1 + math.erf(r / (s * math.sqrt(2))))
        )
    )
    return math.log(z)


def gaussian_log_z(precision) -> float:
    """ln Z of ``E = 1/2 (x - mu)^T P (x - mu)``: ``(d/2) ln 2 pi - 1/2 ln det P``."""
    import numpy as np

    p = np.asarray(precision, dtype=np.float64)
    d = p.shape[0]
    return 0.5 * d * math.log(2 * math.pi) - 0.5 * float(np.linalg.slogdet(p)[1])


# --------------------------------------------------------------------------- 2-D Potts model
# E(s) = -J sum_<ij> delta(s_i, s_j) on the square lattice, each bond once, J = 1.

#: Critical temperature T_c = 1 / ln(1 + sqrt q) from self-duality (Potts 1952; Baxter 1973,
#: J. Phys. C 6, L445), q -> T_c.
POTTS_T_C = {
    2: 1.134592657,
    3: 0.994972861,
    4: 0.910239227,
    5: 0.851528362,
    10: 0.701231568,
}

#: Energy per site at T_c, u_c = -(1 + 1/sqrt q) (self-duality; for q >= 5 the midpoint of the
#: coexisting branches; Baxter 1973), q -> u_c.
POTTS_U_C = {2: -1.707107, 3: -1.577350, 4: -1.5}
