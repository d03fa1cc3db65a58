"""Test and demo support that users of sfi can reuse: an embedded broker, job sequences, a SciCat test server."""
