"""sfi — ingest NeXus files finished by the ESS/ISIS file writer into SciCat.

Public modules are named for the domain: ``messages`` (decoding), ``config``, ``kafka``.
"""

__version__ = "0.1.0"
