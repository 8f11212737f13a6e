"""medannot: automatic annotation of medical images for expert review.

Images go in (DICOM, NIfTI, PNG/JPEG/TIFF, dataset layouts), masks, instances,
boxes and labels come out with provenance, and evaluation says how good they are.
"""

__version__ = "0.1.0"
