"""Every method of the zoo. Importing this package registers them all (explicit imports: deterministic registry)."""

from bilatcf.models import (  # noqa: F401
    _template,
    anogan,
    brgan,
    cam,
    cgn,
    cxgan,
    cyclegan,
    early,
    fanogan,
    fixedpoint,
    gf,
    sbf,
    sff,
    vagan,
    vanilla,
    wu,
)
