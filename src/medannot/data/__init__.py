"""In-memory containers, no file I/O: :class:`Image`, :class:`Geometry`, :class:`Case`."""

from medannot.data.case import Case
from medannot.data.geometry import Geometry
from medannot.data.image import Image, ImageKind
from medannot.data.task import Task

__all__ = ["Case", "Geometry", "Image", "ImageKind", "Task"]
