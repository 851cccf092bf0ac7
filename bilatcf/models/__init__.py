"""Every method of the zoo. Importing this package registers them all (explicit imports: deterministic registry)."""

from bilatcf.models import _template, brgan, cam, cgn, cxgan, cyclegan, gf, sbf, sff, vanilla  # noqa: F401
