"""The embedded synthetic bilateral mammogram dataset (DESIGN §3): procedural, seeded, with the true healthy image.

Why it exists: real bilateral datasets are small, licensed, and never contain the one thing a counterfactual method
should be judged on, the image as it would look without the lesion. Here every patient has one latent anatomy (outline,
density, parenchymal texture) shared by the left and right breast; each side is warped independently, so the two are
roughly but not pixel-wise symmetric. Lesions go into one side only (rarely both, never at mirrored positions), and in a
fraction of patients *symmetric distractors*, drawn from the very same appearance model as the lesions, sit at mirrored
positions on both sides. A single-view model cannot tell a distractor from a lesion; a model that compares the two sides
can. That is the bilateral prior the methods of this library claim to exploit, made measurable.

Conventions:

* Every image is in the canonical orientation "breast on the left" (chest wall at the left edge, nipple to the right).
  Right breasts are stored already mirrored, so a target and its reference face the same way without any flip.
* Image ``i`` is ``(patient * len(views) + view) * 2 + side`` with side 0 = L, 1 = R.
* Lesions are alpha-blended, ``image = healthy + alpha * min(contrast, 1 - healthy)``, and blend weights below
  :data:`ALPHA_CUTOFF` are set to 0. Hence the lesion mask is exactly the support of alpha and ``image == healthy``
  outside it.
* Boxes are ``(x0, y0, x1, y1)`` pixel-edge coordinates: columns ``x0 .. x1 - 1`` and rows ``y0 .. y1 - 1``.
* Each patient draws from its own generators, seeded by ``(seed, patient index, stream)``, so a patient's images do not
  depend on how many patients are generated or in which order (generation can be chunked or parallel and stays
  bit-identical).

Layout, by concern: ``config`` (knobs, constants, seeding, cache key), ``patient`` (latent variables), ``anatomy``,
``lesions``, ``warp`` and ``render`` (pixels, records, :func:`generate`), ``dataset`` (the arrays and their file) and
``cache`` (:func:`load_or_generate`). The preview figure is :func:`bilatcf.viz.synthetic_preview`.
"""

from bilatcf.data.synthetic.cache import load_or_generate
from bilatcf.data.synthetic.config import (
    ALPHA_CUTOFF,
    BENIGN_KINDS,
    CALCIFICATION_CONTRAST_FACTOR,
    DENSITIES,
    DENSITY_PRIOR,
    GENERATOR_VERSION,
    LESION_TYPES,
    MALIGNANT_KINDS,
    MAX_MISALIGNMENT,
    SECOND_DISTRACTOR_RATE,
    SECOND_LESION_RATE,
    SUPPORTED_VIEWS,
    SUSPICION_BETA,
    SyntheticConfig,
)
from bilatcf.data.synthetic.dataset import SyntheticDataset
from bilatcf.data.synthetic.patient import _draw_patient
from bilatcf.data.synthetic.render import generate

__all__ = [
    "ALPHA_CUTOFF",
    "BENIGN_KINDS",
    "CALCIFICATION_CONTRAST_FACTOR",
    "DENSITIES",
    "DENSITY_PRIOR",
    "GENERATOR_VERSION",
    "LESION_TYPES",
    "MALIGNANT_KINDS",
    "MAX_MISALIGNMENT",
    "SECOND_DISTRACTOR_RATE",
    "SECOND_LESION_RATE",
    "SUPPORTED_VIEWS",
    "SUSPICION_BETA",
    "SyntheticConfig",
    "SyntheticDataset",
    "_draw_patient",
    "generate",
    "load_or_generate",
]
