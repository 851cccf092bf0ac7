"""Tiny copies of each public dataset in its real layout and with its real column names, built at test time.

Images are 16 × 12 pixel MG DICOMs written with pydicom, carrying the header tags the real datasets carry (or lack).
Each builder returns the folder to pass as ``--root`` and documents what its rows are meant to exercise, so a test
reads as "this row should give that record or that problem".
"""

from __future__ import annotations

import csv
import plistlib
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

ROWS, COLUMNS = 16, 12  # every image is 16 rows × 12 columns
MG_FOR_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.2"
MG_FOR_PROCESSING = "1.2.840.10008.5.1.4.1.1.1.2.1"
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
VIEW_CODES = {"CC": ("399162004", "cranio-caudal"), "MLO": ("399368009", "medio-lateral oblique")}


def write_dicom(
    path: Path,
    *,
    patient_id: str = "",
    study_uid: str = "",
    sop_uid: str | None = None,
    modality: str = "MG",
    image_laterality: str | None = None,
    laterality: str | None = None,
    view_position: str | None = None,
    view_code: tuple[str, str] | None = None,
    modifier_code: str | None = None,
    series_description: str | None = None,
    sop_class: str = MG_FOR_PRESENTATION,
    presentation_intent: str | None = "FOR PRESENTATION",
    shape: tuple[int, int] = (ROWS, COLUMNS),
) -> Path:
    """One small DICOM file with exactly the tags given (None: the tag is absent); the UID is seeded by the path."""
    sop_uid = sop_uid if sop_uid is not None else generate_uid(entropy_srcs=[str(path)])
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid or generate_uid(entropy_srcs=[str(path), "meta"])
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = sop_class
    if sop_uid:
        ds.SOPInstanceUID = sop_uid
    ds.Modality = modality
    if patient_id:
        ds.PatientID = patient_id
    if study_uid:
        ds.StudyInstanceUID = study_uid
    for keyword, value in (
        ("ImageLaterality", image_laterality),
        ("Laterality", laterality),
        ("ViewPosition", view_position),
        ("SeriesDescription", series_description),
        ("PresentationIntentType", presentation_intent),
    ):
        if value is not None:
            setattr(ds, keyword, value)
    if view_code is not None:
        item = Dataset()
        if view_code[0]:
            item.CodeValue = view_code[0]
            item.CodingSchemeDesignator = "SCT"
        item.CodeMeaning = view_code[1]
        if modifier_code:
            modifier = Dataset()
            modifier.CodeValue = modifier_code
            modifier.CodingSchemeDesignator = "SCT"
            item.ViewModifierCodeSequence = [modifier]
        ds.ViewCodeSequence = [item]
    pixels = np.arange(shape[0] * shape[1], dtype=np.uint16).reshape(shape) % 4096
    ds.set_pixel_data(pixels, photometric_interpretation="MONOCHROME2", bits_stored=12, generate_instance_uid=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def write_csv(path: Path, header: list[str], rows: list[list[str]], delimiter: str = ",") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle, delimiter=delimiter)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def write_xlsx(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    """A one-sheet workbook, numbers stored as numbers (as Excel saves a typed-in sheet) and empty cells left out."""
    import openpyxl

    def cell(value: str) -> object:
        try:
            number = float(value)
        except ValueError:
            return value if value != "" else None
        return int(number) if number.is_integer() and "." not in value else number

    workbook = openpyxl.Workbook()
    sheet = workbook.active
    for values in [header, *rows]:
        sheet.append([cell(v) for v in values])
    workbook.save(path)
    return path


# ---------------------------------------------------------------------------------------------------------- INbreast
INBREAST_HEADER = ["Patient ID", "Patient age", "Laterality", "View", "Acquisition date", "File Name", "ACR", "Bi-Rads"]
INBREAST_PATIENT = "6c613a14b80a8591"
INBREAST_MASTECTOMY = "0a1b2c3d4e5f6071"
#: One polygon (a 4-point square) and one single-point calcification, in Point_px (x, y) strings.
INBREAST_ROIS = [
    ("Mass", ["(2.0, 3.0)", "(8.0, 3.0)", "(8.0, 9.0)", "(2.0, 9.0)"]),
    ("Calcification", ["(10.0, 12.0)"]),
    ("Cluster", []),  # no points: left out, with a note
]


def inbreast(root: Path) -> Path:
    """``INbreast Release 1.0`` below ``root``.

    Patient 6c61…: four views; R CC and R MLO BI-RADS 1 (normal), L CC 4c with the XML polygon + calcification, L MLO
    4a without XML, and an extra R FB view. Patient 0a1b… (mastectomy): L CC BI-RADS 3 with a space-padded ACR, L MLO
    BI-RADS 2. Bad rows: a CSV side that contradicts the file name, a File Name without DICOM, a DICOM not in the
    CSV, a file name without patient token.
    """
    base = root / "INbreast Release 1.0"
    images = base / "AllDICOMs"
    rows = [
        (INBREAST_PATIENT, "R", "CC", "201001", "22678622", "4", "1"),
        (INBREAST_PATIENT, "R", "MLO", "201001", "22678646", "4", "1"),
        (INBREAST_PATIENT, "L", "CC", "201001", "22678694", "4", "4c"),
        (INBREAST_PATIENT, "L", "MLO", "201001", "22678720", "4", "4a"),
        (INBREAST_PATIENT, "R", "FB", "201001", "50994300", "4", "1"),
        (INBREAST_MASTECTOMY, "L", "CC", "200902", "30011674", "        ", "3"),
        (INBREAST_MASTECTOMY, "L", "MLO", "200902", "30011700", "2", "2"),
    ]
    for patient, side, view, _, file_name, _, _ in rows:
        write_dicom(
            images / f"{file_name}_{patient}_MG_{side}_{view}_ANON.dcm", image_laterality=side, view_position=view
        )
    csv_rows = [["removed", "removed", s, v, d, f, acr, b] for _, s, v, d, f, acr, b in rows]
    csv_rows.append(["removed", "removed", "L", "CC", "201003", "40000001", "2", "2"])  # its file says R
    write_dicom(images / f"40000001_{INBREAST_PATIENT}_MG_R_CC_ANON.dcm")
    csv_rows.append(["removed", "removed", "R", "CC", "201003", "40000002", "2", "1"])  # no DICOM file
    write_dicom(images / f"40000003_{INBREAST_PATIENT}_MG_L_CC_ANON.dcm")  # not in the CSV
    write_dicom(images / "40000004.dcm")  # no patient token
    write_csv(base / "INbreast.csv", INBREAST_HEADER, csv_rows, delimiter=";")
    rois = [
        {"Name": name, "NumberOfPoints": len(points), "Point_px": points, "Point_mm": points, "Type": 15}
        for name, points in INBREAST_ROIS
    ]
    plist = {"Images": [{"ImageIndex": 0, "NumberOfROIs": len(rois), "ROIs": rois}]}
    (base / "AllXML").mkdir(parents=True)
    with open(base / "AllXML" / "22678694.xml", "wb") as handle:
        plistlib.dump(plist, handle, fmt=plistlib.FMT_XML)
    (base / "AllXML" / "30011700.xml").write_text("<plist><dict><key>Images</key>")  # damaged
    return root


# --------------------------------------------------------------------------------------------------------- CBIS-DDSM
CBIS_MASS_HEADER = [
    "patient_id", "breast_density", "left or right breast", "image view", "abnormality id", "abnormality type",
    "mass shape", "mass margins", "assessment", "pathology", "subtlety", "image file path", "cropped image file path",
    "ROI mask file path",
]  # fmt: skip
CBIS_CALC_HEADER = [
    "patient_id", "breast density", "left or right breast", "image view", "abnormality id", "abnormality type",
    "calc type", "calc distribution", "assessment", "pathology", "subtlety", "image file path",
    "cropped image file path", "ROI mask file path",
]  # fmt: skip


def _uid(*parts: str) -> str:
    return generate_uid(prefix="1.3.6.1.4.1.9590.100.1.2.", entropy_srcs=list(parts))


def cbis(root: Path, layout: str = "classic") -> Path:
    """``CBIS-DDSM/`` below ``root`` in the ``classic`` (UID folders) or ``descriptive`` NBIA layout, + the 4 CSVs.

    P_00001: LEFT CC (mass, MALIGNANT, crop and mask columns swapped) and LEFT MLO (mass, MALIGNANT), RIGHT CC (calc,
    BENIGN_WITHOUT_CALLBACK): a CC pair. P_00004 LEFT CC: two masses (BENIGN, BENIGN_WITHOUT_CALLBACK) and the same
    mammogram in the calc table (MALIGNANT): merged, no mask. P_00007: LEFT CC in mass train, LEFT MLO in calc test:
    all test. P_00011 LEFT CC: the mask has another size than the image. Bad rows: P_00009 not downloaded, P_00010
    whose side contradicts its folder.
    """
    base = root / "CBIS-DDSM"
    tables: dict[str, list[list[str]]] = {name: [] for name in ("mass_train", "mass_test", "calc_train", "calc_test")}

    def add(table, patient, side, view, abnormality, pathology, assessment, density, *, swap=False, mask_shape=None,
            download=True, folder_side=None):  # fmt: skip
        kind, split = table.split("_")
        subject = (
            f"{kind.capitalize()}-{'Training' if split == 'train' else 'Test'}_{patient}_{folder_side or side}_{view}"
        )
        full = _write_cbis_series(base, subject, "full mammogram images", (ROWS, COLUMNS), layout, download)
        lesion = f"{subject}_{abnormality}"
        crop = _write_cbis_series(base, lesion, "cropped images", (5, 4), layout, download)
        mask = _write_cbis_series(base, lesion, "ROI mask images", mask_shape or (ROWS, COLUMNS), layout, download)
        crop_cell, mask_cell = (mask, crop) if swap else (crop, mask)
        kind_cells = (
            ["mass", "OVAL", "CIRCUMSCRIBED"] if kind == "mass" else ["calcification", "PLEOMORPHIC", "CLUSTERED"]
        )
        tables[table].append(
            [
                patient,
                density,
                side,
                view,
                str(abnormality),
                *kind_cells,
                str(assessment),
                pathology,
                "3",
                full,
                crop_cell + "\n",
                mask_cell + "\n",
            ]  # fmt: skip
        )

    add("mass_train", "P_00001", "LEFT", "CC", 1, "MALIGNANT", 4, "3", swap=True)
    add("mass_train", "P_00001", "LEFT", "MLO", 1, "MALIGNANT", 5, "3")
    add("calc_train", "P_00001", "RIGHT", "CC", 1, "BENIGN_WITHOUT_CALLBACK", 2, "3")
    add("mass_train", "P_00004", "LEFT", "CC", 1, "BENIGN", 3, "2")
    add("mass_train", "P_00004", "LEFT", "CC", 2, "BENIGN_WITHOUT_CALLBACK", 2, "2")
    add("calc_train", "P_00004", "LEFT", "CC", 1, "MALIGNANT", 4, "2")
    add("mass_train", "P_00007", "LEFT", "CC", 1, "BENIGN", 3, "1")
    add("calc_test", "P_00007", "LEFT", "MLO", 1, "BENIGN", 3, "1")
    add("mass_test", "P_00011", "LEFT", "CC", 1, "MALIGNANT", 5, "4", mask_shape=(8, 8))
    add("mass_test", "P_00009", "RIGHT", "MLO", 1, "BENIGN", 2, "2", download=False)
    add("mass_test", "P_00010", "LEFT", "CC", 1, "BENIGN", 2, "2", folder_side="RIGHT")
    for table, rows in tables.items():
        kind, split = table.split("_")
        header = CBIS_MASS_HEADER if kind == "mass" else CBIS_CALC_HEADER
        write_csv(root / f"{kind}_case_description_{split}_set.csv", header, rows)
    return root


def _write_cbis_series(base: Path, subject: str, description: str, shape, layout: str, download: bool) -> str:
    """Write one series of the subject in the layout asked for; return the CSV path cell (always classic)."""
    study, series = _uid(subject, "study"), _uid(subject, description)
    cell = f"{subject}/{study}/{series}/000000.dcm"
    if not download:
        return cell
    if layout == "classic":
        # One full mammogram is stored as 1-1.dcm, as NBIA names it, instead of the CSV's 000000.dcm.
        name = "1-1.dcm" if subject.endswith("P_00001_LEFT_MLO") else "000000.dcm"
        path = base / subject / study / series / name
    else:
        number = {"full mammogram images": 24515, "cropped images": 84211, "ROI mask images": 11907}[description]
        path = base / subject / f"07-20-2016-DDSM-NA-{number}" / f"1.000000-{description}-{number}" / "1-1.dcm"
    write_dicom(path, patient_id=subject, series_description=description, presentation_intent=None, shape=shape)
    return cell


# ------------------------------------------------------------------------------------------------------- VinDr-Mammo
VINDR_BREAST_HEADER = [
    "study_id", "series_id", "image_id", "laterality", "view_position", "height", "width", "breast_birads",
    "breast_density", "split",
]  # fmt: skip
VINDR_FINDING_HEADER = [
    "image_id", "study_id", "series_id", "laterality", "view_position", "height", "width", "breast_birads",
    "breast_density", "finding_categories", "finding_birads", "xmin", "ymin", "xmax", "ymax", "split",
]  # fmt: skip
VINDR_STUDY = "b3f2a1c4d5e6f708192a3b4c5d6e7f80"
VINDR_TEST_STUDY = "0123456789abcdef0123456789abcdef"


def vindr(root: Path) -> Path:
    """``physionet.org/files/vindr-mammo/1.0.0/`` below ``root``.

    Training study b3f2…: R CC / R MLO BI-RADS 1 (No Finding), L CC / L MLO BI-RADS 4 with a Mass box reaching outside
    the image (xmin −5.16) and a two-category box. Test study 0123…: BI-RADS 2 on the left, BI-RADS 1 on the right,
    one image file missing. Bad finding rows: a box with only some coordinates, an image_id not in the breast table.
    """
    base = root / "physionet.org" / "files" / "vindr-mammo" / "1.0.0"
    images = {
        "img_rcc": (VINDR_STUDY, "R", "CC", "BI-RADS 1", "DENSITY C", "training"),
        "img_rmlo": (VINDR_STUDY, "R", "MLO", "BI-RADS 1", "DENSITY C", "training"),
        "img_lcc": (VINDR_STUDY, "L", "CC", "BI-RADS 4", "DENSITY C", "training"),
        "img_lmlo": (VINDR_STUDY, "L", "MLO", "BI-RADS 4", "DENSITY C", "training"),
        "img_t_lcc": (VINDR_TEST_STUDY, "L", "CC", "BI-RADS 2", "DENSITY B", "test"),
        "img_t_rcc": (VINDR_TEST_STUDY, "R", "CC", "BI-RADS 1", "DENSITY B", "test"),
        "img_t_lmlo": (VINDR_TEST_STUDY, "L", "MLO", "BI-RADS 2", "DENSITY B", "test"),
    }
    breast_rows = []
    for image, (study, side, view, birads, density, split) in images.items():
        breast_rows.append([study, "series1", image, side, view, str(ROWS), str(COLUMNS), birads, density, split])
        if image != "img_t_lmlo":  # its file is missing
            write_dicom(base / "images" / study / f"{image}.dicom", image_laterality=side, view_position=view)

    def finding(image, categories, birads, box):
        study, side, view, breast_birads, density, split = images.get(image, (VINDR_STUDY, "L", "CC", "", "", ""))
        return [image, study, "series1", side, view, str(ROWS), str(COLUMNS), breast_birads, density, categories,
                birads, *box, split]  # fmt: skip

    nan = ["", "", "", ""]
    finding_rows = [
        finding("img_rcc", "['No Finding']", "", nan),
        finding("img_rmlo", "['No Finding']", "", nan),
        finding("img_lcc", "['Mass']", "BI-RADS 4", ["-5.16", "2.5", "8.0", "10.0"]),
        finding("img_lmlo", "['Suspicious Calcification', 'Mass']", "BI-RADS 4", ["1.0", "1.0", "20.0", "30.0"]),
        finding("img_t_lcc", "['Mass']", "BI-RADS 3", ["2.0", "nan", "6.0", "7.0"]),
        finding("img_unknown", "['Mass']", "BI-RADS 3", ["1", "1", "2", "2"]),
    ]
    write_csv(base / "breast-level_annotations.csv", VINDR_BREAST_HEADER, breast_rows)
    write_csv(base / "finding_annotations.csv", VINDR_FINDING_HEADER, finding_rows)
    (base / "SHA256SUMS.txt").write_text("")
    return root


# -------------------------------------------------------------------------------------------------------------- RSNA
RSNA_HEADER = [
    "site_id", "patient_id", "image_id", "laterality", "view", "age", "cancer", "biopsy", "invasive", "BIRADS",
    "implant", "density", "machine_id", "difficult_negative_case",
]  # fmt: skip


def rsna(root: Path) -> Path:
    """``rsna-breast-cancer-detection/`` below ``root``.

    Patient 10006: L CC / L MLO cancer (biopsied), R CC / R MLO negative, plus an R AT view. Patient 10011: R CC and
    R MLO a biopsied benign lesion, with a repeated R CC acquisition; L CC and L MLO BIRADS 0 without biopsy. Bad
    rows: an image_id listed twice, an unknown view, a missing file.
    """
    base = root / "rsna-breast-cancer-detection"
    rows = [
        ["2", "10006", "462822612", "L", "CC", "61", "1", "1", "1", "", "0", "B", "29", "False"],
        ["2", "10006", "1459541791", "L", "MLO", "61", "1", "1", "1", "", "0", "B", "29", "False"],
        ["2", "10006", "1864590858", "R", "MLO", "61", "0", "0", "0", "1", "0", "B", "29", "False"],
        ["2", "10006", "1874946579", "R", "CC", "61", "0", "0", "0", "1", "0", "B", "29", "False"],
        ["2", "10006", "1874946580", "R", "AT", "61", "0", "0", "0", "1", "0", "B", "29", "False"],
        ["1", "10011", "220375232", "R", "CC", "55", "0", "1", "0", "", "0", "", "21", "True"],
        ["1", "10011", "220375233", "R", "CC", "55", "0", "1", "0", "", "0", "", "21", "True"],
        ["1", "10011", "270344397", "R", "MLO", "55", "0", "1", "0", "", "0", "", "21", "True"],
        ["1", "10011", "541722628", "L", "CC", "55", "0", "0", "0", "0", "0", "", "21", "False"],
        ["1", "10011", "1031443799", "L", "MLO", "55", "0", "0", "0", "0", "0", "", "21", "False"],
    ]
    for row in rows:
        write_dicom(base / "train_images" / row[1] / f"{row[2]}.dcm", patient_id=row[1], image_laterality=row[3])
    rows.append(list(rows[0]))  # the same image twice
    rows.append(["1", "10011", "99", "L", "XX", "55", "0", "0", "0", "", "0", "", "21", "False"])  # unknown view
    rows.append(["1", "10011", "98", "L", "ML", "55", "0", "0", "0", "", "0", "", "21", "False"])  # no file
    write_csv(base / "train.csv", RSNA_HEADER, rows)
    write_csv(base / "test.csv", ["site_id", "patient_id", "image_id", "laterality", "view", "age", "implant",
                                  "machine_id", "prediction_id"], [])  # fmt: skip
    return root


# -------------------------------------------------------------------------------------------------------------- CMMD
CMMD_HEADER = ["ID1", "LeftRight", "Age", "number", "abnormality", "classification", "subtype"]


def cmmd(root: Path, sheet: str = "xlsx") -> Path:
    """``CMMD/`` (NBIA descriptive names) + ``CMMD_clinicaldata_revision.xlsx`` (or ``.csv``) below ``root``.

    D1-0001: four images, a benign calcification on the right (its L MLO has only a code meaning, no code value).
    D1-0002: two images of the left breast only, malignant. D2-0003: left images, but the sheet's row is for the right
    breast (no image of it): the row is reported, the left images are normal. D2-0004: no row at all. Bad files: one
    without laterality tags, one with a view code that is not a mammography view.
    """
    base = root / "manifest-1616439774456" / "CMMD"
    study = {patient: _uid(patient, "study") for patient in ("D1-0001", "D1-0002", "D2-0003", "D2-0004")}

    def image(patient, number, side, view, *, meaning_only=False, no_side=False, code=None):
        code = code or VIEW_CODES[view]
        path = base / patient / "07-18-2010-NA-NA-79377" / "1.000000-NA-70244" / f"1-{number}.dcm"
        write_dicom(path, patient_id=patient, study_uid=study[patient], image_laterality=None if no_side else side,
                    view_code=("", code[1]) if meaning_only else code, presentation_intent=None)  # fmt: skip

    image("D1-0001", 1, "R", "CC")
    image("D1-0001", 2, "R", "MLO")
    image("D1-0001", 3, "L", "CC")
    image("D1-0001", 4, "L", "MLO", meaning_only=True)
    image("D1-0002", 1, "L", "CC")
    image("D1-0002", 2, "L", "MLO")
    image("D2-0003", 1, "L", "CC")
    image("D2-0003", 2, "L", "MLO")
    image("D2-0003", 3, "L", "CC", no_side=True)
    image("D2-0004", 1, "L", "CC")
    image("D2-0004", 2, "R", "CC", code=("127457009", "tissue specimen from breast"))
    rows = [
        ["D1-0001", "R", "44", "2", "calcification", "Benign", ""],
        ["D1-0002", "L", "51", "2", "mass", "Malignant", ""],
        ["D2-0003", "R", "60", "2", "both", "Malignant", "Luminal A"],
    ]
    if sheet == "xlsx":
        write_xlsx(root / "CMMD_clinicaldata_revision.xlsx", CMMD_HEADER, rows)
    else:
        write_csv(root / "CMMD_clinicaldata_revision.csv", CMMD_HEADER, rows)
    return root


# ------------------------------------------------------------------------------------------------------------ folder
FOLDER_LABELS_HEADER = ["path", "image_id", "patient_id", "laterality", "study_id", "abnormal", "malignant", "density"]


def folder(root: Path) -> Path:
    """A clinic export: patient folders of MG DICOMs, tags more or less complete, and files that are not usable.

    p1 (study s1): L CC with ImageLaterality + ViewPosition; R CC with the Laterality tag only; L MLO with only a
    SeriesDescription "L MLO"; R MLO with no tags, named ``..._R_MLO.dcm``. p2: L CC and L MLO (one breast). Files to
    skip: a text file, a CT, a FOR PROCESSING image, a spot-compression view, contradictory sides, no side, an
    unknown view, a copy of p1's L CC.
    """
    data = root / "export"
    p1, p2 = data / "p1", data / "p2"
    lcc = write_dicom(p1 / "a.dcm", patient_id="p1", study_uid="1.2.3.1", sop_uid="1.2.3.1.1", image_laterality="L",
                      view_position="CC")  # fmt: skip
    write_dicom(p1 / "b.dcm", patient_id="p1", study_uid="1.2.3.1", sop_uid="1.2.3.1.2", laterality="R",
                view_position="CC")  # fmt: skip
    write_dicom(p1 / "c", patient_id="p1", study_uid="1.2.3.1", sop_uid="1.2.3.1.3", series_description="L MLO")
    write_dicom(p1 / "scan_R_MLO.dcm", patient_id="p1", study_uid="1.2.3.1", sop_uid="1.2.3.1.4")
    write_dicom(p2 / "1.dcm", patient_id="p2", study_uid="1.2.3.2", sop_uid="1.2.3.2.1", image_laterality="L",
                view_position="CC")  # fmt: skip
    write_dicom(p2 / "2.dcm", patient_id="p2", study_uid="1.2.3.2", sop_uid="1.2.3.2.2", image_laterality="L",
                view_position="MLO")  # fmt: skip
    (p1 / "notes.txt").write_text("reported by Dr X\n")
    write_dicom(p1 / "ct.dcm", patient_id="p1", modality="CT", sop_class=CT_IMAGE, presentation_intent=None)
    write_dicom(p1 / "raw.dcm", patient_id="p1", image_laterality="L", view_position="CC", sop_class=MG_FOR_PROCESSING,
                presentation_intent="FOR PROCESSING")  # fmt: skip
    write_dicom(p1 / "spot.dcm", patient_id="p1", image_laterality="L", view_code=("399162004", "cranio-caudal"),
                modifier_code="399055006")  # fmt: skip
    write_dicom(p1 / "x_R_CC.dcm", patient_id="p1", image_laterality="L", view_position="CC")
    write_dicom(p1 / "image3.dcm", patient_id="p1", view_position="CC")
    write_dicom(p1 / "ap.dcm", patient_id="p1", image_laterality="R", view_position="AP")
    (p1 / "copy").mkdir()
    (p1 / "copy" / "a.dcm").write_bytes(lcc.read_bytes())
    return data


def folder_labels(path: Path) -> Path:
    """Labels for :func:`folder`: p1's left breast (breast row), p1's R CC by path, and two bad rows."""
    rows = [
        ["", "", "p1", "L", "", "1", "1", ""],
        ["p1/b.dcm", "", "", "", "", "0", "0", "2"],
        ["", "1.2.3.2.1", "", "", "", "0", "0", "A"],
        ["", "", "p9", "R", "", "1", "0", ""],  # no such patient
        ["", "1.2.3.2.2", "", "", "", "yes", "", ""],  # bad value
    ]
    return write_csv(path, FOLDER_LABELS_HEADER, rows)
