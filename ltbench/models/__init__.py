"""Networks split into a feature extractor and a linear head (decoupled training needs the cut)."""
from .factory import Network, create_network  # noqa: F401
