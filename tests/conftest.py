"""Settings for the whole suite.

Hypothesis's per-example deadline (200 ms by default) is a timing assertion: on a shared
2-core CI machine the first example of a walk test can take several times that while the
imports warm up, which fails a test whose behaviour is right. Speed is measured by the
benchmarks in bench/, never by tests, so the suite runs without that deadline.
"""

from hypothesis import settings

settings.register_profile("dataplane", deadline=None)
settings.load_profile("dataplane")
