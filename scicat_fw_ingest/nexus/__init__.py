"""HDF5/NeXus adapter: reading metadata from finished files (``reader``) and writing files from a
nexus_structure (``writer``, used by the simulated file writer)."""
