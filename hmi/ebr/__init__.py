"""Electronic batch records and their true copies (21 CFR 11.10(b), EU GMP Annex 11 §8).

One record (:class:`hmi.ebr.model.EbrRecord`) is assembled from the database and feeds both
copies: the signed electronic bundle (:mod:`hmi.ebr.bundle`) and the printable PDF
(:mod:`hmi.ebr.pdf`), which is printed from the bundle and names its hash on every page.
Audit trail reviews of batches and time ranges are in :mod:`hmi.ebr.review`. No Textual here.
"""
