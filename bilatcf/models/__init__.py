"""Every method of the zoo. Importing this package registers them all (explicit imports: deterministic registry)."""

from bilatcf.models import _template, anogan, brgan, cgn, cyclegan, fanogan, gf, sbf, sff, vagan, vanilla  # noqa: F401
