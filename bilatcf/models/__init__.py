"""Every method of the zoo. Importing this package registers them all (explicit imports: deterministic registry)."""

from bilatcf.models import (  # noqa: F401
    _template,
    abn,
    anogan,
    brgan,
    cam,
    cgn,
    cvt,
    cxgan,
    cyclegan,
    early,
    fanogan,
    fixedpoint,
    gf,
    ham,
    mil,
    sbf,
    sff,
    vagan,
    vanilla,
    wu,
)
