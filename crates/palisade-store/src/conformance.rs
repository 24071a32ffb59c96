//! The conformance suite: every backend's tests call these functions with fresh stores.
